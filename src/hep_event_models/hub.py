"""Hub uploads with versions (``huggingface_hub``): repository, branch and tag creation."""

from __future__ import annotations

from pathlib import Path


def push_folder(
    folder: str | Path,
    repo_id: str,
    revision: str | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    tag: str | None = None,
    token: str | None = None,
    repo_type: str = "model",
):
    """Upload ``folder`` to ``repo_id``: creates the repository and the branch ``revision``
    when missing (``upload_folder`` does not), uploads, then tags if ``tag`` is given.

    Returns the upload's ``CommitInfo``.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        revision=revision,
        commit_message=commit_message or f"Upload {Path(folder).name}",
        repo_type=repo_type,
    )
    if tag:
        api.create_tag(repo_id, tag=tag, revision=revision, exist_ok=True, repo_type=repo_type)
    return info
