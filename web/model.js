// A tfchar .tflite export in LiteRT.js: load it, read its vocabulary, and stream text with its `step`
// signature, sampling in JavaScript (sampler.js) exactly as the exported `generate` samples in the graph.
//
// Why `step` and not `generate`: LiteRT.js 2.5 runs fixed-shape tensors only. `generate`'s output length
// depends on an input value, which its CompiledModel cannot return; `step` at batch 1 has fixed shapes
// once its batch dimension (-1 in the file) is 1. Its public run() still rejects Int32[1] against the
// file's Int32[-1], so step() below calls the compiled model one level down (pinned version: package.json).

import {loadAndCompile, loadLiteRt, Tensor} from '@litertjs/core';
import {draw, nextRng, seedRng, settings, uniform} from './sampler.js';

const RUNTIME = new URL('./node_modules/@litertjs/core/wasm/', import.meta.url).href;
const REQUIRED = ['step', 'vocabulary'];
let runtime; // loadLiteRt once per page

/** A user-facing problem: the message names it and the fix. */
export class DemoError extends Error {}

/** Fetch a .tflite file's bytes, with an error that says what to do. */
export async function fetchModel(url) {
  let response;
  try {
    response = await fetch(url, {cache: 'no-store'});
  } catch (e) {
    throw new DemoError(`cannot fetch ${url} (${e.message}): is the demo server running?`);
  }
  if (!response.ok) {
    throw new DemoError(`cannot load ${url} (HTTP ${response.status}): start the demo with an export ` +
                        `(python -m tfchar.demo EXPORT_DIR) or pick a .tflite file`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

export class CharModel {
  /** Compile a tfchar export's bytes; `name` is only for messages. */
  static async load(bytes, name) {
    runtime ??= loadLiteRt(RUNTIME).catch((e) => {
      runtime = undefined; // let a later load try again
      throw new DemoError(`cannot start LiteRT.js from ${RUNTIME} (${firstLine(e)}): run npm ci --prefix web`);
    });
    await runtime;
    let compiled;
    try {
      compiled = await loadAndCompile(bytes, {accelerator: 'wasm'});
    } catch (e) {
      throw new DemoError(`${name} is not a readable TFLite model (${firstLine(e)}): ` +
                          `export one with python -m tfchar.export RUN_DIR`);
    }
    const missing = REQUIRED.filter((k) => !(k in compiled.signatures));
    if (missing.length) {
      compiled.delete();
      throw new DemoError(`${name} has no ${missing.join('/')} signature, so it is not a tfchar export: ` +
                          `make one with python -m tfchar.export RUN_DIR`);
    }
    const model = new CharModel(compiled);
    await model.readVocabulary();
    return model;
  }

  constructor(compiled) {
    this.compiled = compiled;
    this.stepSig = compiled.signatures.step;
    this.stepInputs = this.stepSig.getInputDetails().map((d) => d.name); // run() takes them in this order
    this.stepOutputs = this.stepSig.getOutputDetails().map((d) => d.name);
    const state = this.stepSig.getInputDetails().find((d) => d.name === 'state');
    this.stateSize = state.shape[1];
  }

  async readVocabulary() {
    const out = await this.compiled.signatures.vocabulary.run({});
    this.codepoints = Int32Array.from(out.codepoints.toTypedArray());
    this.byteUnit = out.byte_unit.toTypedArray()[0] === 1;
    for (const t of Object.values(out)) t.delete();
    this.index = new Map(Array.from(this.codepoints, (c, i) => [c, i]));
  }

  get vocabSize() {
    return this.codepoints.length;
  }

  /** The prime's units (code points, or UTF-8 bytes for byte models) that are not in the vocabulary. */
  unknown(prime) {
    return [...new Set(this.units(prime))].filter((u) => !this.index.has(u));
  }

  units(text) {
    return this.byteUnit ? Array.from(new TextEncoder().encode(text)) : Array.from(text, (c) => c.codePointAt(0));
  }

  /** One time step at batch 1: token id, state Float32Array[S] -> {logits, state}. */
  async step(token, state) {
    const inputs = {token: new Tensor(Int32Array.of(token), [1]), state: new Tensor(state, [1, this.stateSize])};
    const ordered = this.stepInputs.map((name) => inputs[name]);
    try {
      const buffers = await this.stepSig.liteRtCompiledModel.run(
          this.stepSig.signatureIndex, ordered.map((t) => t.liteRtTensorBuffer));
      const out = {};
      buffers.forEach((buffer, i) => {
        const t = new Tensor(buffer);
        out[this.stepOutputs[i]] = t.toTypedArray(); // a copy: the tensor can go
        t.delete();
      });
      return out;
    } finally {
      ordered.forEach((t) => t.delete());
    }
  }

  /**
   * Yield `length` sampled code points (byte values for byte models) after the prime's token ids, as the
   * exported `generate(prime, length, temperature, top_k, top_p, seed)`: read all but the last prime
   * token, then repeatedly read a token and draw the next. No prime reads as if after token 0.
   */
  async* generate(ids, length, {temperature, topK, topP, seed}) {
    ids = ids.length ? ids : [0];
    let state = new Float32Array(this.stateSize);
    for (const id of ids.slice(0, -1)) state = (await this.step(id, state)).state;
    const knobs = settings(temperature, topK, topP, this.vocabSize);
    let token = ids[ids.length - 1];
    let rng = seedRng(seed);
    for (let i = 0; i < length; i++) {
      const out = await this.step(token, state);
      state = out.state;
      rng = nextRng(rng);
      token = draw(out.logits, uniform(rng), knobs);
      yield this.codepoints[token];
    }
  }

  delete() {
    this.compiled.delete();
  }
}

function firstLine(e) {
  return String(e?.message ?? e).split('\n')[0].slice(0, 200);
}
