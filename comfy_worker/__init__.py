"""The parts of the RunPod ComfyUI worker: the job's story at the root, its parts in rooms.

Each room is a sub-package, one module per concern; a room imports only rooms below it
(the order of this map, lowest first: tests/unit/test_package_map.py holds it), and the
story's modules stand above them all.

core/: what every room stands on
    contract         the job's states, output lists, RunPod's limits, result shapes: one place for every consumer
    sources          what a job brings in (inline, http(s), s3://, hf://), parsed once
    job              what each stage of a job is given (JobContext) and the interface of a bucket
    job_files        ComfyUI's job folders; remove every file the job created
    timings          per-stage wall times for the result
    errors           error hierarchy, the job's error result, guarded clean-up steps
    settings         environment settings, read once
    runpod_sdk       every SDK name used beyond start() and progress_update, checked at start-up
    job_take         ask RunPod for the next job the moment a slot frees (the SDK loop's one decision)

node_packs/: custom node packs from the network volume, prepared before ComfyUI starts
    volume_boot          start.sh's boot step: which packs ComfyUI may load, their links, the report
    requirements_layer   the packages they need, in one layer cached on the volume; never the image's
    volume_packs         the report: each pack's pin, why one was refused, what became of each

request/: what the job asks for
    job_input        parse and validate the job's input (pure)
    workflow         the workflow as a value (nodes, titles, seeds, tags)
    node_catalog     ComfyUI's installed nodes: the one reader of GET /object_info
    ui_format        convert the editor's UI format (comfy-cli's converter)
    named_workflows  workflows shipped with the worker, with typed parameters
    openapi          the endpoint's API as an OpenAPI 3.1 document (the job input, the contract)

comfyui/: the ComfyUI edge
    connection       this ComfyUI: its API, process, folders, and what it offers
    capabilities     what it offers (nodes, named workflows, models) and the answers from it
    installed        what ComfyUI has installed; a refused model explained
    nodes_snapshot   its node list as last read, kept on disk: ready the moment ComfyUI answers
    comfy_api        the interface to ComfyUI (a Protocol) and its event type
    comfy_client     that interface over HTTP + websocket (aiohttp)
    comfy_events     the one event stream, routed to each prompt in flight; queue positions
    comfy_process    ComfyUI's process: alive or dead; wait while it starts; end it
    prompt           follow a prompt's events to the end; stop it
    history          find the prompt's output files and texts in its history (pure)

transfer/: bytes in and out
    downloads        fetch a source safely (the address check, per-host headers, size cap, typed refusals)
    storage          S3-compatible buckets (outputs, s3:// inputs, submit records)
    input_files      place the job's input files in ComfyUI's input folder (URLs fetched safely)
    delivery         still-image format, base64 or store URLs, the size guard, the deadline
    submits          submit once: the record an idempotency key leaves, and the repeat it serves

progress/: what the job's caller sees while it runs
    progress         fold events into the progress payload; throttle the relay
    runpod_progress  send progress to RunPod in order (one sender, newest wins)
    webhooks         push progress and the final state to the job's own URL, signed

models/: models a job names by URL or hf://, the page cache before the first job, what made a result
    remote_models    models named by URL or hf://, fetched for a job
    model_cache      the shared, content-named cache those go to
    prefetch         read the first job's model files while ComfyUI boots
    boot_readahead   read ahead the files ComfyUI's boot opens (listed at build) on a cold host
    provenance       what made a result (ComfyUI, node packs, model hashes, the graph); a replay's check

The story, at the root
    worker           the Worker: lifecycle, the job's story, the error boundary, clean-up
    prompt_run       one prompt's life for one job: submit, follow, stop, release, resubmit
    warmup           run one job before taking jobs

rp_handler.py at the repository root does the process's lifecycle around a Worker.
"""
