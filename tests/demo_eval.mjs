// Offline eval demo (./dev.sh demo eval): the fake upstream's simulated reasoner (its answers
// get better with more forced thinking rounds; tests/fake/upstream.mjs, reasoner mode) behind
// config/eval/demo.yaml (a control and two forced variants), and `ponder eval` over the bundled
// config/eval/demo.jsonl. Prints the summary and where the report is. No API key or network.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { startFake, ponderBin, repoRoot } from './lib/harness.mjs';

const out = process.env.PONDER_DEMO_OUT || join(repoRoot, 'build', 'eval-demo');
rmSync(out, { recursive: true, force: true });
const fake = await startFake({ reasoner: true });
const args = ['eval', '--config', join(repoRoot, 'config/eval/demo.yaml'),
  '--dataset', join(repoRoot, 'config/eval/demo.jsonl'), '--out', out, '--seed', '1',
  '--price', '2.50,10.00'];
console.log(`$ PONDER_DEMO_UPSTREAM=${fake.url}/v1 ponder ${args.join(' ')}\n`);
const env = { ...process.env, PONDER_DEMO_UPSTREAM: `${fake.url}/v1` };
delete env.OPENAI_API_KEY;
const code = await new Promise((resolve) => {
  const p = spawn(ponderBin, args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
  p.on('exit', (c) => resolve(c ?? 1));
});
await fake.close();
if (code === 0) {
  console.log(`\nThe upstream was a simulation (the fake reasoner), not a model: it answers right only`);
  console.log(`after enough forced thinking rounds. Open the report: ${join(out, 'report.html')}`);
}
process.exit(code);
