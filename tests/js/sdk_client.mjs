// Drives the npm runpod-sdk against an endpoint and prints what each call returned,
// as one JSON object on the last line (the SDK prints its polls before it), for
// tests/integration/test_sdk_clients.py to check.
//   node sdk_client.mjs <base url ending in /v2> <api key> <endpoint id> <jobs.json>
// jobs.json: {"quick": <job input>, "long": <job input>}
import { readFileSync } from "node:fs";
import runpodSdk from "runpod-sdk";

const [baseUrl, apiKey, endpointId, jobsFile] = process.argv.slice(2);
const jobs = JSON.parse(readFileSync(jobsFile, "utf8"));
const endpoint = runpodSdk(apiKey, { baseUrl }).endpoint(endpointId);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function untilSampling(id) {
  for (let i = 0; i < 300; i++) {
    const status = await endpoint.status(id);
    if (status.status === "IN_PROGRESS" && status.output && status.output.step) return;
    await sleep(100);
  }
  throw new Error(`job ${id} did not start sampling`);
}

const results = {};
results.runSyncQuick = await endpoint.runSync({ input: jobs.quick });

// A job queued behind another outlives /runsync's 5 s wait; its blocker is cancelled
// at 6.5 s, so runSync gets the result from /status-sync, which it polls until 10 s.
const blocker = await endpoint.run({ input: jobs.long });
await untilSampling(blocker.id);
setTimeout(() => endpoint.cancel(blocker.id), 6500);
results.runSyncQueued = await endpoint.runSync({ input: jobs.quick }, 5000);

const { id } = await endpoint.run({ input: jobs.quick });
const chunks = [];
for await (const chunk of endpoint.stream(id)) chunks.push(chunk);
results.streamChunks = chunks;
results.statusAfterStream = await endpoint.status(id);

const long = await endpoint.run({ input: jobs.long });
await untilSampling(long.id);
results.cancel = await endpoint.cancel(long.id);
results.health = await endpoint.health();
results.purgeQueue = await endpoint.purgeQueue();
process.stdout.write(`\n${JSON.stringify(results)}\n`);
