"""The endpoint client the bridge talks through, as `client`: the published extension carries
its own copy (`comfy_worker_client/` beside this file, put there by
scripts/publish_editor_extension.sh); in the worker's repository it is the installed package."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import comfy_worker_client as client
else:
    try:
        from . import comfy_worker_client as client
    except ImportError:
        import comfy_worker_client as client

__all__ = ["client"]
