// Drive the demo page in Debian's Chromium (headless) for tests: node web/drive.mjs SCRIPT.json
// SCRIPT is a list of steps run in order; prints {"reads": {name: value}, "console": [...]} as JSON.
//   {"goto": url}  {"fill": "#id", "value": "..."}  {"check": "#id", "on": true}  {"click": "#id"}
//   {"files": "#id", "path": "/abs/file"}  {"wait": "js expression"}  {"screenshot": "/abs/out.png"}
//   {"text": "#id", "as": name}  {"eval": "js expression", "as": name}   (reads; eval without "as": just run)
// Never downloads a browser: CHROMIUM (default /usr/bin/chromium) must exist.

import {mkdtempSync, readFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

const TIMEOUT_MS = Number(process.env.DRIVE_TIMEOUT_MS || 60000);
// Without the networking flags Chromium phones home at start-up, which a closed network refuses.
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const steps = JSON.parse(readFileSync(process.argv[2], 'utf-8'));
const profile = mkdtempSync(join(tmpdir(), 'tfchar-chromium-'));
const reads = {};
const console_ = [];
let context;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: FLAGS, headless: true,
    viewport: {width: 1000, height: 760}});
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on('console', (m) => console_.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console_.push(`pageerror: ${e.message}`));
  for (const s of steps) {
    if ('goto' in s) await page.goto(s.goto);
    else if ('fill' in s) await page.fill(s.fill, String(s.value));
    else if ('check' in s) await page.setChecked(s.check, Boolean(s.on));
    else if ('click' in s) await page.click(s.click);
    else if ('files' in s) await page.setInputFiles(s.files, s.path);
    else if ('wait' in s) await page.waitForFunction(s.wait, null, {timeout: TIMEOUT_MS});
    else if ('text' in s) reads[s.as] = await page.textContent(s.text);
    else if ('eval' in s) {
      const value = await page.evaluate(s.eval);
      if (s.as) reads[s.as] = value;
    }
    else if ('screenshot' in s) await page.screenshot({path: s.screenshot, fullPage: true});
    else throw new Error(`unknown step ${JSON.stringify(s)}`);
  }
  process.stdout.write(JSON.stringify({reads, console: console_}) + '\n');
} catch (e) {
  process.stdout.write(JSON.stringify({error: e.message, reads, console: console_}) + '\n');
  process.exitCode = 1;
} finally {
  await context?.close();
  rmSync(profile, {recursive: true, force: true});
}
