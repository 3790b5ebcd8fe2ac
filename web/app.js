// The page: load a model (?model=URL, default the demo server's model/model.tflite, or a picked file),
// check the form, stream the text into the output chunk by chunk as the model's generate_chunk writes
// it, and report chars/s. Stop ends the generation before the next chunk.
// document.body.dataset.state (loading, ready, running, done, error) tells tests where the page is;
// window.tfcharDemo.model() is the loaded CharModel (for tests and the browser benchmark).

import {CharModel, DemoError, fetchModel} from './model.js';

const $ = (id) => document.getElementById(id);
// python -m tfchar.demo serves its MODEL here (default saved_models/tiny_shakespeare/model.tflite).
const DEFAULT_MODEL = 'model/model.tflite';
const PAINT_EVERY_MS = 50; // hand the browser a frame this often while generating
let model = null;
let stopRequested = false;
window.tfcharDemo = {model: () => model};

function setState(state, message = '') {
  document.body.dataset.state = state;
  $('error').textContent = state === 'error' ? message : '';
  $('error').hidden = state !== 'error';
  $('generate').disabled = !model || state === 'running' || state === 'loading';
  $('stop').disabled = state !== 'running';
}

async function loadModel(bytesPromise, name) {
  setState('loading');
  $('model-info').textContent = `loading ${name} ...`;
  try {
    const t0 = performance.now();
    const bytes = await bytesPromise;
    model?.delete();
    model = null;
    model = await CharModel.load(bytes, name);
    const ms = performance.now() - t0;
    $('model-info').textContent = `${name}: ${(bytes.length / 1e6).toFixed(2)} MB, ${model.vocabSize} ` +
        `${model.byteUnit ? 'bytes' : 'characters'}, state ${model.stateSize} floats; loaded in ` +
        `${ms.toFixed(0)} ms; ${model.chunkSize} characters per call; runs on the CPU (LiteRT.js WebAssembly, XNNPack)`;
    setState('ready');
  } catch (e) {
    $('model-info').textContent = `no model loaded (${name})`;
    setState('error', message(e));
  }
}

/** The form's settings, or a DemoError naming the first bad field and how to fix it. */
function readForm() {
  const raw = (id) => $(id).value.trim();
  const num = (id) => (raw(id) === '' ? NaN : Number(raw(id)));
  const s = {prime: $('prime').value, length: num('length'), greedy: $('greedy').checked,
             temperature: num('temperature'), topK: num('top-k'), topP: num('top-p'), seed: num('seed'),
             stopText: $('stop-at').value.replace(/\\n/g, '\n')}; // a one-line field: \n is a newline
  const fail = (text) => { throw new DemoError(text); };
  if (!Number.isInteger(s.length) || s.length <= 0) {
    fail(`Length ${raw('length')} must be a positive whole number, e.g. 500`);
  }
  if (!s.greedy && !(s.temperature > 0 && Number.isFinite(s.temperature))) {
    fail(`Temperature ${raw('temperature')} must be a positive number, e.g. 0.8 (or tick Greedy)`);
  }
  if (!Number.isInteger(s.topK) || s.topK < 0) fail(`Top-k ${raw('top-k')} must be a whole number >= 0 (0 = off)`);
  if (!(s.topP > 0 && s.topP <= 1)) fail(`Top-p ${raw('top-p')} must be in (0, 1], e.g. 0.9 (1 = off)`);
  if (!Number.isInteger(s.seed) || s.seed < -(2 ** 31) || s.seed >= 2 ** 31) {
    fail(`Seed ${raw('seed')} must be a whole number that fits in 32 bits`);
  }
  const name = (u) => JSON.stringify(model.byteUnit ? `byte ${u}` : String.fromCodePoint(u));
  const unknown = model.unknown(s.prime);
  if (unknown.length) {
    const shown = unknown.slice(0, 20).map(name);
    fail(`The prime has ${unknown.length} character(s) this model never saw: ${shown.join(', ')}; ` +
         `remove them (the model knows ${model.vocabSize})`);
  }
  const never = model.unknown(s.stopText);
  if (never.length) {
    fail(`Stop at has ${never.length} character(s) this model never writes: ${never.slice(0, 20).map(name).join(', ')}; ` +
         `it would never stop: use characters of its vocabulary (or leave it empty)`);
  }
  s.stop = model.units(s.stopText);
  if (s.greedy) s.temperature = 0; // the exported sampler's greedy: argmax
  return s;
}

async function generate() {
  let s;
  try {
    s = readForm();
  } catch (e) {
    setState('error', message(e));
    return;
  }
  setState('running');
  stopRequested = false;
  const decoder = new TextDecoder('utf-8'); // byte models: UTF-8 split across chunks decodes when complete
  $('out-prime').textContent = s.prime;
  const out = $('out-text');
  out.textContent = '';
  let pending = ''; // written since the last paint: appended, so a paint costs what is new, not the whole text
  let n = 0;
  const t0 = performance.now();
  let painted = t0;
  try {
    for await (const units of model.generate(model.units(s.prime), s.length, s)) {
      pending += model.byteUnit ? decoder.decode(units, {stream: true}) : String.fromCodePoint(...units);
      n += units.length;
      document.body.dataset.written = n; // what Stop is measured against (tests)
      if (performance.now() - painted > PAINT_EVERY_MS) {
        out.append(pending);
        pending = '';
        show(n, t0);
        await new Promise((resolve) => setTimeout(resolve, 0)); // let the page paint and take clicks
        painted = performance.now();
      }
      if (stopRequested) break; // a click is taken while a chunk runs or at a paint: stop before the next
    }
    out.append(pending + (model.byteUnit ? decoder.decode() : ''));
    show(n, t0);
    setState('done');
  } catch (e) {
    setState('error', message(e));
  }
}

function show(n, t0) {
  const seconds = (performance.now() - t0) / 1000;
  $('stats').textContent = `${n} chars in ${seconds.toFixed(2)} s: ${(n / seconds).toFixed(0)} chars/s`;
  $('stats').dataset.charsPerSecond = (n / seconds).toFixed(1);
}

function message(e) {
  return e instanceof DemoError ? e.message : `unexpected error: ${e?.message ?? e}`;
}

$('generate').addEventListener('click', generate);
$('stop').addEventListener('click', () => { stopRequested = true; });
$('greedy').addEventListener('change', () => { $('temperature').disabled = $('greedy').checked; });
$('model-file').addEventListener('change', () => {
  const file = $('model-file').files[0];
  if (file) loadModel(file.arrayBuffer().then((b) => new Uint8Array(b)), file.name);
});

const url = new URLSearchParams(location.search).get('model') || DEFAULT_MODEL;
loadModel(fetchModel(url), url);
