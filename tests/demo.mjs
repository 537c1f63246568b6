// Offline demo: starts the fake upstream and ponder, sends one chat request through ponder
// and prints the forced exchange: every upstream call, then the client's single response.
import { startFake, startPonder } from './lib/harness.mjs';

const fake = await startFake({ port: 0 });
// Scripted replies so the demo reads like a real exchange (two thinking rounds, one answer).
fake.script(
  { content: 'The train covers 120 km in 1.5 hours, so its speed is 120 / 1.5 = 80 km/h.' },
  { content: 'Checking: 80 km/h * 1.5 h = 120 km. Correct, no mistake.' },
  { content: 'The train travels at 80 km/h.' },
);
const ponder = await startPonder({
  config: {
    upstreams: [{ name: 'fake', base_url: `${fake.url}/v1` }],
    routes: [{ name: 'demo', forcing: { mode: 'chat', rounds: 2, think_budget: 512, answer_budget: 128 } }],
    log: { level: 'warn', access_log: 'off' },
  },
});
const request = {
  model: 'demo-model',
  messages: [{ role: 'user', content: 'A train covers 120 km in 1.5 hours. What is its speed?' }],
};
const r = await fetch(`${ponder.base}/chat/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request),
});
const body = await r.json();
const line = '-'.repeat(78);
console.log(line);
console.log('Client request (any OpenAI SDK):');
console.log(JSON.stringify(request, null, 2));
console.log(line);
console.log(`Upstream calls ponder made (${fake.log.length}):`);
fake.log.forEach((call, i) => {
  console.log(`\n# call ${i + 1} (max_tokens ${call.body.max_tokens})`);
  for (const m of call.body.messages) console.log(`  ${m.role.padEnd(9)} ${JSON.stringify(m.content)}`);
});
console.log(line);
console.log(`Response to the client: HTTP ${r.status}, x-ponder-route=${r.headers.get('x-ponder-route')}` +
  ` x-ponder-variant=${r.headers.get('x-ponder-variant')} x-ponder-rounds=${r.headers.get('x-ponder-rounds')}`);
const msg = body.choices[0].message;
console.log('\nreasoning_content:\n' + msg.reasoning_content);
console.log('\ncontent:\n' + msg.content);
console.log('\nusage: ' + JSON.stringify(body.usage));
console.log(line);
await ponder.stop();
await fake.close();
