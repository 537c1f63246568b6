// The Debian package, built from a scratch copy of the tree (so its build folders never meet
// the developer's): dpkg-buildpackage -us -uc -b, then its file list and conffiles, the
// installed binary (--version, --check-config on the installed /etc/ponder/ponder.yaml) in a
// scratch root made with dpkg -x, the man page (man -l, groff warnings), the systemd unit
// (systemd-analyze verify and security) and lintian.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, cpSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { repoRoot } from '../lib/harness.mjs';

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}
const tools = ['dpkg-buildpackage', 'dh', 'dpkg-deb', 'lintian', 'groff', 'man'];
const missing = tools.filter((c) => !have(c));
const skip = missing.length ? `needs ${missing.join(', ')} (Debian packages debhelper, dpkg-dev, lintian, groff-base, man-db)` : false;

const version = readFileSync(join(repoRoot, 'meson.build'), 'utf8').match(/version : '([^']+)'/)[1];

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw r.error;
  return r;
}

// The tree as git has it (committed, plus new files not ignored), else everything but build
// folders and node_modules: what a fresh clone would build.
function copyTree(dst) {
  const git = run('git', ['-C', repoRoot, 'ls-files', '-z', '--cached', '--others', '--exclude-standard']);
  if (git.status === 0) {
    for (const f of git.stdout.split('\0')) {
      if (!f || f.startsWith('tests/fuzz/corpus/') || !existsSync(join(repoRoot, f))) continue;
      mkdirSync(dirname(join(dst, f)), { recursive: true });
      cpSync(join(repoRoot, f), join(dst, f));
    }
  } else {
    cpSync(repoRoot, dst, {
      recursive: true,
      filter: (src) => !/\/(build[^/]*|node_modules|\.git)$/.test(src),
    });
  }
}

describe('Debian package', { skip }, () => {
  let work, deb, root, buildLog = '';

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'ponder-deb-'));
    const src = join(work, `ponder-${version}`);
    copyTree(src);
    const r = run('dpkg-buildpackage', ['-us', '-uc', '-b'], {
      cwd: src, timeout: 240000,
      env: { ...process.env, DEB_BUILD_OPTIONS: 'nocheck parallel=2' },
    });
    buildLog = r.stdout + r.stderr;
    assert.equal(r.status, 0, `dpkg-buildpackage failed:\n${buildLog.slice(-6000)}`);
    deb = join(work, readdirSync(work).find((f) => /^ponder_.*\.deb$/.test(f)));
    root = join(work, 'root');
    execFileSync('dpkg-deb', ['-x', deb, root]);
  });

  after(() => { if (work) rmSync(work, { recursive: true, force: true }); });

  test('the package holds the binary, man page, configs, graders, kit and service', () => {
    const list = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8' });
    const files = new Set(list.split('\n').map((l) => l.split(/\s+/).pop()).filter(Boolean));
    for (const f of [
      './usr/bin/ponder', './usr/share/man/man1/ponder.1.gz', './etc/ponder/ponder.yaml',
      './etc/default/ponder', './lib/systemd/system/ponder.service',
      './usr/share/ponder/examples/ponder.yaml', './usr/share/ponder/examples/ab-test.yaml',
      './usr/share/ponder/examples/gpt4o-6round.yaml', './usr/share/ponder/examples/vllm-prefill.yaml',
      './usr/share/ponder/examples/s1-completions.yaml', './usr/share/ponder/graders/judge.json',
      './usr/share/ponder/observability/grafana-dashboard.json',
      './usr/share/ponder/observability/ponder-recording.rules.yml',
      './usr/share/ponder/observability/ponder-alerts.rules.yml',
      './usr/share/doc/ponder/copyright',
    ]) assert.ok(files.has(f), `${f} in the package:\n${list}`);
    assert.equal(execFileSync('dpkg-deb', ['-f', deb, 'Version'], { encoding: 'utf8' }).trim(), version);
    // The config files are conffiles: dpkg keeps the admin's changes on upgrade.
    const ctl = join(work, 'control');
    execFileSync('dpkg-deb', ['-e', deb, ctl]);
    const conffiles = readFileSync(join(ctl, 'conffiles'), 'utf8').split('\n').filter(Boolean).sort();
    assert.deepEqual(conffiles, ['/etc/default/ponder', '/etc/ponder/ponder.yaml']);
  });

  test('/etc/default/ponder is root-only and carries no key', () => {
    const f = join(root, 'etc/default/ponder');
    assert.equal(statSync(f).mode & 0o777, 0o600);
    const text = readFileSync(f, 'utf8');
    for (const line of text.split('\n')) {
      assert.ok(line === '' || line.startsWith('#'), `only comments: ${line}`);
    }
    assert.doesNotMatch(text, /sk-[A-Za-z0-9]/);
  });

  test('the installed binary runs and accepts the installed config', () => {
    const bin = join(root, 'usr/bin/ponder');
    const env = { ...process.env };
    delete env.OPENAI_API_KEY;
    assert.equal(execFileSync(bin, ['--version'], { encoding: 'utf8', env }).trim(), `ponder ${version}`);
    const r = run(bin, ['--config', join(root, 'etc/ponder/ponder.yaml'), '--check-config'], { env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /effective configuration/);
    for (const f of readdirSync(join(root, 'usr/share/ponder/examples'))) {
      const c = run(bin, ['--config', join(root, 'usr/share/ponder/examples', f), '--check-config'], { env });
      assert.equal(c.status, 0, `${f}: ${c.stderr}`);
    }
  });

  test('the man page renders without warnings', () => {
    const page = join(root, 'usr/share/man/man1/ponder.1.gz');
    const roff = execFileSync('gzip', ['-dc', page]);
    const g = run('groff', ['-man', '-Tutf8', '-ww', '-z'], { input: roff });
    assert.equal(g.status, 0);
    assert.equal(g.stderr, '', 'groff warnings');
    const m = run('man', ['-l', page], { env: { ...process.env, MANWIDTH: '100', MAN_KEEP_FORMATTING: '' } });
    assert.equal(m.status, 0, m.stderr);
    for (const section of ['SYNOPSIS', 'OPTIONS', 'PONDER EVAL', 'PONDER EXPORT', 'SIGNALS', 'FILES',
      'ENVIRONMENT', 'EXIT STATUS']) assert.match(m.stdout, new RegExp(`^${section}$`, 'm'));
    assert.match(m.stdout, new RegExp(`^ponder ${version.replaceAll('.', '\\.')}\\s`, 'm'), 'the page names the version');
    for (const word of ['--check-config', 'feedback.secret', 'feedback.max_age_s', '--dataset', '--best-per-item', 'SIGHUP']) {
      assert.ok(m.stdout.includes(word), word);
    }
  });

  test('the service unit passes systemd-analyze verify', { skip: have('systemd-analyze') ? false : 'no systemd-analyze' }, () => {
    const unit = readFileSync(join(root, 'lib/systemd/system/ponder.service'), 'utf8');
    for (const want of ['DynamicUser=yes', 'ExecReload=/bin/kill -HUP $MAINPID', 'NoNewPrivileges=yes',
      'ProtectSystem=strict', 'PrivateTmp=yes', 'ProtectHome=yes', 'Restart=on-failure',
      'EnvironmentFile=-/etc/default/ponder']) assert.ok(unit.includes(want), want);
    // The unit as installed, its program paths pointing into the scratch root (verify checks
    // that they exist and are executable).
    const dir = join(work, 'unit');
    mkdirSync(dir);
    writeFileSync(join(dir, 'ponder.service'), unit.replaceAll('/usr/bin/ponder', join(root, 'usr/bin/ponder')));
    const v = run('systemd-analyze', ['verify', '--man=no', join(dir, 'ponder.service')]);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stderr.trim(), '', 'systemd-analyze verify reports nothing');
    const s = run('systemd-analyze', ['security', '--offline=yes', '--threshold=25', join(dir, 'ponder.service')]);
    assert.equal(s.status, 0, s.stdout.slice(-2000));
  });

  test('lintian reports nothing', () => {
    const changes = join(work, readdirSync(work).find((f) => f.endsWith('.changes')));
    const r = run('lintian', ['--fail-on', 'error,warning,info', '--display-info', changes], { timeout: 120000 });
    assert.equal(r.stdout.trim(), '', `lintian:\n${r.stdout}`);
    assert.equal(r.status, 0, r.stderr);
  });
});
