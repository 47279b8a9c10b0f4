"""This ComfyUI, as the worker reaches it: its API, its process, its folders, and what
it offers.

Contract: `ComfyConnection(settings)` builds nothing that needs an event loop; tests
pass a fake `api` and `process`. It joins the worker's two channels to one ComfyUI:
HTTP and the websocket (`api`, a `ComfyAPI`) and the shared file system (`folders`,
where jobs place inputs and find outputs; `job_files()` starts a job's ledger).
- `events` (`EventRouter`) is the one reader of ComfyUI's event stream: jobs queue
  their prompts through it and get their own prompt's events.
- `await ready()` returns the `ComfyCapabilities` once ComfyUI serves: it fails at once
  when the process has died (`ComfyUnavailable`), else waits for it (`wait_until_ready`)
  and learns what it offers, once per connection however many jobs ask at once (and logs
  what became of the network volume's node packs, when it has any). While
  ComfyUI boots it imports the UI-format converter and reads the node snapshot; with a
  usable snapshot it is ready the moment ComfyUI answers, and `learned()` (ComfyUI's own
  node list, asked at most once per connection) is left to what needs it. It logs which
  ComfyUI answered and which of its newer routes the worker uses (`ComfyAPI.offers`).
- `await end()` ends a ComfyUI whose prompt ignores its interrupt (SIGKILL; start.sh
  starts a new one) and forgets the connection; True when a new one will start.
  `restarts` counts these, so a prompt queued behind the hung one knows why it was lost.
- `await drop_if_dead()` forgets the connection of a ComfyUI that died, so a later job
  waits for a new one; `await close()` closes the connections, which the next job
  reopens in whatever event loop runs it.
"""

from __future__ import annotations

import asyncio
import logging

from ..core.contract import VolumePack
from ..core.job_files import JobFiles, JobFolders
from ..core.settings import Settings
from ..request import ui_format
from .capabilities import ComfyCapabilities
from .comfy_api import ComfyAPI
from .comfy_client import ComfyClient
from .comfy_events import EventRouter
from .comfy_process import ComfyProcess, wait_until_ready

log = logging.getLogger(__name__)


class ComfyConnection:
    def __init__(self, settings: Settings, api: ComfyAPI | None = None, process: ComfyProcess | None = None):
        self.settings = settings
        self.api: ComfyAPI = api if api is not None else ComfyClient(settings.comfy_http_url)
        self.process = process if process is not None else ComfyProcess(settings.comfy_pid_file)
        self.folders = JobFolders.of(settings.comfyui_path)
        self.events = EventRouter(self.api)
        self.restarts = 0
        self._capabilities: ComfyCapabilities | None = None
        self._learning: asyncio.Lock | None = None  # made in the event loop that uses it

    def job_files(self) -> JobFiles:
        return JobFiles(self.folders)

    async def ready(self) -> ComfyCapabilities:
        if self.process.is_dead():
            raise self.process.death_error()
        if self._capabilities is not None:
            return self._capabilities
        if self._learning is None:
            self._learning = asyncio.Lock()
        async with self._learning:
            if self._capabilities is None:
                importing = asyncio.ensure_future(asyncio.to_thread(ui_format.preload))
                remembering = asyncio.ensure_future(
                    asyncio.to_thread(ComfyCapabilities.remembered, self.api, self.settings, self.learned)
                )
                await wait_until_ready(self.api, self.process, self.settings)
                log.info("%s", (await self.api.offers()).describe())  # its newer routes, used from now on
                await importing
                remembered = await remembering
                if remembered is not None:
                    log.info("the node list from the snapshot %s (%d node types)", self.settings.nodes_snapshot_path,
                             len(remembered.nodes))  # fmt: skip
                capabilities = remembered or await ComfyCapabilities.learn(self.api, self.settings)
                if capabilities.volume_packs.packs:
                    log_volume_packs(await capabilities.volume_pack_states())
                self._capabilities = capabilities
            return self._capabilities

    async def learned(self) -> ComfyCapabilities:
        """What ComfyUI itself says it offers now (not the snapshot), asked once per connection."""
        capabilities = await self.ready()
        if capabilities.learn_now is None:
            return capabilities
        if self._learning is None:  # close() dropped it: this is another event loop
            self._learning = asyncio.Lock()
        async with self._learning:
            if self._capabilities is capabilities:
                self._capabilities = await ComfyCapabilities.learn(self.api, self.settings)
            current = self._capabilities
        if current is None or current.learn_now is not None:  # ComfyUI restarted meanwhile
            return await self.learned()
        return current

    async def end(self) -> bool:
        self.restarts += 1
        await self._forget()
        return self.process.kill()

    async def drop_if_dead(self) -> None:
        if self.process.lost():
            await self._forget()

    async def close(self) -> None:
        await self.events.close()
        await self.api.close()
        self._learning = None  # the next job may run in another event loop

    async def _forget(self) -> None:
        await self.close()
        self._capabilities = None


def log_volume_packs(states: dict[str, VolumePack]) -> None:
    """Name each of the network volume's node packs with what became of it."""
    loaded = [f"{name} ({state['nodes']} node type(s))" for name, state in states.items() if state["state"] == "loaded"]
    log.info("node packs from the network volume: %s loaded", ", ".join(loaded) or "none")
    for name, state in states.items():
        if state["state"] != "loaded":
            log.error("node pack '%s' from the network volume %s: %s", name, state["state"], state.get("error"))
