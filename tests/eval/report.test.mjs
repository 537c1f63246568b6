// report.html (SPEC section 11), written by report.c from hand-written summary.json and
// samples.jsonl (tests/eval/data) through the eval_report_write test driver, then opened in
// headless Chromium: a real screenshot, and the DOM has the chart (one mark per variant) and
// the per-item table. Also: self-contained (no http(s) in src/href, no script, a CSP that
// forbids loading anything), untrusted text rendered as text, and bounded for huge runs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { ponderBin, repoRoot } from '../lib/harness.mjs';

const DATA = join(repoRoot, 'tests', 'eval', 'data');
const WRITER = join(dirname(ponderBin), 'tests', 'eval_report_write');
const HOSTILE = '</script><img src=x onerror=alert(1)>';
const CHROMIUM = ['chromium', 'chromium-browser', 'google-chrome']
  .find((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);

let dir;
before(() => { dir = mkdtempSync(join(tmpdir(), 'ponder-report-')); });
after(() => rmSync(dir, { recursive: true, force: true }));

function writeReport(summaryPath, samplesPath, name = 'report.html') {
  const out = join(dir, name);
  const r = spawnSync(WRITER, [summaryPath, samplesPath, out], { encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, r.stderr);
  return out;
}

function chromium(args, html) {
  const r = spawnSync(CHROMIUM, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-extensions', '--disable-sync', '--hide-scrollbars',
    `--user-data-dir=${join(dir, 'profile')}`, ...args, `file://${html}`],
  { encoding: 'utf8', timeout: 120000, maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

// A PNG's size and pixels (8-bit RGB or RGBA, non-interlaced: what Chromium writes).
function decodePng(buf) {
  assert.deepEqual([...buf.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10], 'PNG signature');
  let off = 8, width, height, bitDepth, colorType, interlace;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off), type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4);
      bitDepth = data[8]; colorType = data[9]; interlace = data[12];
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  assert.equal(bitDepth, 8);
  assert.equal(interlace, 0);
  assert.ok(colorType === 2 || colorType === 6, `color type ${colorType}`);
  const bpp = colorType === 6 ? 4 : 3, stride = width * bpp;
  const raw = inflateSync(Buffer.concat(idat));
  const px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? px[y * stride + x - bpp] : 0, b = y ? px[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y ? px[(y - 1) * stride + x - bpp] : 0;
      let p;
      switch (f) {
        case 0: p = 0; break;
        case 1: p = a; break;
        case 2: p = b; break;
        case 3: p = (a + b) >> 1; break;
        case 4: { const q = a + b - c, pa = Math.abs(q - a), pb = Math.abs(q - b), pc = Math.abs(q - c);
          p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c; break; }
        default: throw new Error(`PNG filter ${f}`);
      }
      px[y * stride + x] = (src[x] + p) & 255;
    }
  }
  return { width, height, bpp, px };
}

const count = (text, re) => (text.match(re) || []).length;
const summary = JSON.parse(readFileSync(join(DATA, 'summary.json'), 'utf8'));
const samples = readFileSync(join(DATA, 'samples.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const itemIds = [...new Set(samples.map((s) => String(s.item_id)))];

describe('report.html from the fixtures', () => {
  let html, htmlPath;
  before(() => {
    htmlPath = writeReport(join(DATA, 'summary.json'), join(DATA, 'samples.jsonl'));
    html = readFileSync(htmlPath, 'utf8');
  });

  test('one self-contained page: no script, no external resource, a CSP that loads nothing', () => {
    assert.match(html, /^<!DOCTYPE html>/);
    assert.doesNotMatch(html, /<script/i);
    assert.doesNotMatch(html, /<link/i);
    assert.doesNotMatch(html, /<(img|iframe|object|embed)\b/i);
    assert.doesNotMatch(html, /url\(/i);
    assert.doesNotMatch(html, /@import/i);
    const refs = [...html.matchAll(/\b(?:src|href|xlink:href|action|srcset)\s*=\s*["']?\s*([^"'\s>]*)/gi)].map((m) => m[1]);
    for (const r of refs) assert.doesNotMatch(r, /^(https?:)?\/\//i, `external reference ${r}`);
    assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">/);
  });

  test('untrusted sample text is escaped', () => {
    assert.equal(html.includes(HOSTILE), false);
    assert.ok(html.includes('&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;'));
  });

  test('the summary table has every variant with its numbers', () => {
    const table = html.slice(html.indexOf('<tbody>', html.indexOf('<table class="summary"')), html.indexOf('</table>'));
    assert.equal(count(table, /<tr><th>/g), summary.variants.length);
    assert.match(table, /control<\/th><td>33\.3% <small>\[6\.2, 79\.2\]<\/small>/);
    assert.match(table, /deep<\/th><td>100\.0% <small>\[43\.9, 100\.0\]<\/small><\/td><td>\+66\.7 pts <small>\[0\.0, 100\.0\]<\/small><\/td><td>0\.5<\/td>/);
    assert.match(table, /<td>120 \/ 27000 ms<\/td>/);
    assert.match(table, /<td>\$0\.0000123<\/td><td>\$0\.0000369<\/td>/);
  });

  test('headless Chromium: the DOM has the chart and the per-item table, untrusted text as text',
    { skip: !CHROMIUM && 'no chromium installed (Debian package chromium)' }, () => {
      const dom = chromium(['--dump-dom'], htmlPath);
      const svg = dom.slice(dom.indexOf('<svg id="chart"'), dom.indexOf('</svg>'));
      assert.ok(svg.length > 0, 'the chart');
      const marks = [...svg.matchAll(/<g class="mark" data-variant="([^"]*)">/g)].map((m) => m[1]);
      assert.deepEqual(marks, summary.variants.map((v) => v.name), 'one mark per variant');
      assert.equal(count(svg, /<circle /g), summary.variants.length);
      assert.match(svg, />mean reasoning tokens per sample</);
      assert.match(svg, />accuracy \(95% interval\)</);
      // Interval bars: a vertical line per variant from its ci95 low to high.
      assert.equal(count(svg, /<g class="mark"[^]*?<line [^]*?<line [^]*?<line [^]*?<circle/g), 2);
      const items = dom.slice(dom.indexOf('<div class="itable" id="items"'));
      const rows = [...items.matchAll(/<details class="irow( differ)?" role="row" data-item="([^"]*)">/g)];
      assert.deepEqual(rows.map((m) => m[2]).sort(), [...itemIds].sort());
      assert.deepEqual(rows.filter((m) => m[1]).map((m) => m[2]).sort(), ['2', 'three']);
      // Each row opens onto every variant's answer and reasoning.
      for (const v of summary.variants) assert.equal(count(items, new RegExp(`<div class="col" data-variant="${v.name}">`, 'g')), itemIds.length);
      assert.match(items, /<pre class="reasoning">2\+3: count up from 2 three times: 3, 4, 5\.\nWait, let me check/);
      assert.equal(/<img\b/i.test(dom), false, 'the hostile <img> did not become an element');
      assert.equal(/<script\b/i.test(dom), false);
      assert.ok(dom.includes('&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;'));
    });

  test('headless Chromium: the screenshot is a real PNG with the page drawn on it',
    { skip: !CHROMIUM && 'no chromium installed (Debian package chromium)' }, () => {
      const png = join(dir, 'report.png');
      chromium([`--screenshot=${png}`, '--window-size=1280,1100'], htmlPath);
      const { width, height, bpp, px } = decodePng(readFileSync(png));
      assert.deepEqual([width, height], [1280, 1100]);
      const colors = new Set();
      let ink = 0, blue = 0, orange = 0;
      for (let i = 0; i < px.length; i += bpp) {
        const [r, g, b] = [px[i], px[i + 1], px[i + 2]];
        colors.add((r << 16) | (g << 8) | b);
        if (r + g + b < 600) ink++;
        if (Math.abs(r - 0x1f) < 12 && Math.abs(g - 0x6f) < 12 && Math.abs(b - 0xb4) < 12) blue++;
        if (Math.abs(r - 0xd9) < 12 && Math.abs(g - 0x48) < 12 && Math.abs(b - 0x0f) < 12) orange++;
      }
      assert.ok(colors.size > 50, `${colors.size} colours`);
      assert.ok(ink > width * height * 0.01, `${ink} dark pixels`);
      assert.ok(blue > 60 && orange > 60, `the variants' marks are drawn (${blue}, ${orange} pixels)`);
    });
});

describe('report.html for a huge run stays bounded', () => {
  test('long texts are cut with a marker, the texts and the rows have a budget', () => {
    const lines = [];
    const big = 'x'.repeat(32767) + 'é'.repeat(4000); // the cut at 32768 bytes falls inside an é
    for (let i = 0; i < 6000; i++) {
      for (const variant of ['a', 'b']) {
        lines.push(JSON.stringify({ item_id: i, variant, sample: 0, input: `question ${i}`, reference: '1',
          reasoning: i < 500 ? big : 'short', output_text: i === 0 ? 'y'.repeat(100000) : 'Answer: 1',
          final_answer: '1', score: (i + (variant === 'a' ? 0 : 1)) % 2, usage: { prompt_tokens: 1, completion_tokens: 1, reasoning_tokens: 1 },
          rounds: 1, upstream_calls: 2, latency_ms: 1, error: null }));
      }
    }
    const samplesPath = join(dir, 'huge.jsonl'), summaryPath = join(dir, 'huge.json');
    writeFileSync(samplesPath, lines.join('\n') + '\n');
    writeFileSync(summaryPath, JSON.stringify({ dataset: 'huge', items: 6000, samples: 1, grader: 'g', seed: 1,
      variants: [{ name: 'a', accuracy: 0.5, ci95: [0.49, 0.51], diff: null, reasoning_tokens: 1 },
        { name: 'b', accuracy: 0.5, ci95: [0.49, 0.51], diff: { vs: 'a', mean: 0, ci95: [-0.02, 0.02], p_value: 1 }, reasoning_tokens: 1 }] }));
    const out = writeReport(summaryPath, samplesPath, 'huge.html');
    const size = statSync(out).size;
    assert.ok(size < 20 << 20, `${size} bytes`);
    const html = readFileSync(out, 'utf8');
    assert.ok(html.includes('[… 91808 more bytes in samples.jsonl]'), 'the long answer is cut with a marker');
    assert.ok(html.includes('x<span class="cut"> [… 8000 more bytes in samples.jsonl]</span>'), 'the reasoning is cut at a character boundary');
    assert.match(html, /texts left out: the report's text budget is spent/);
    assert.match(html, /1000 more items are left out of this table \(it shows the first 5000\)/);
    assert.equal(count(html, /<details class="irow/g), 5000);
    // Numeric ids are shown in their order.
    assert.ok(html.indexOf('data-item="9"') < html.indexOf('data-item="10"'));
  });
});
