// A tfchar .tflite export in LiteRT.js: load it, read its vocabulary, and stream text with its
// `generate_chunk` signature: the same in-graph sampler as `python -m tfchar.sample`, K characters per call.
//
// LiteRT.js 2.5 runs fixed-shape tensors only, and every tensor of `generate_chunk` has a shape fixed at
// export: the prime goes in K code points at a time, each call returns K slots of which `valid` are new,
// and the recurrent state (`state`) and the sampler's state (`carry`) go back in with the next call.
// There is no sampler in JavaScript: the page only feeds the graph and decodes what it writes.

import {loadAndCompile, loadLiteRt, Tensor} from '@litertjs/core';

const RUNTIME = new URL('./node_modules/@litertjs/core/wasm/', import.meta.url).href;
const CHUNK = 'generate_chunk';
const REQUIRED = [CHUNK, 'vocabulary'];
const NO_STOP = -1;
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
      const old = 'step' in compiled.signatures ? ' (an export older than generate_chunk: export it again)' : '';
      compiled.delete();
      throw new DemoError(`${name} has no ${missing.join('/')} signature, so it cannot stream text here${old}: ` +
                          `make one with python -m tfchar.export RUN_DIR`);
    }
    const model = new CharModel(compiled);
    await model.readVocabulary();
    return model;
  }

  constructor(compiled) {
    this.compiled = compiled;
    this.chunkSig = compiled.signatures[CHUNK];
    const shape = (name) => Array.from(this.chunkSig.getInputDetails().find((d) => d.name === name).shape);
    this.chunkSize = shape('prime')[0]; // K
    this.stateSize = shape('state')[1]; // S
    this.carrySize = shape('carry')[0];
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

  /** The units of `text` (code points, or UTF-8 bytes for byte models) that are not in the vocabulary. */
  unknown(text) {
    return [...new Set(this.units(text))].filter((u) => !this.index.has(u));
  }

  units(text) {
    return this.byteUnit ? Array.from(new TextEncoder().encode(text)) : Array.from(text, (c) => c.codePointAt(0));
  }

  /** Zeros that start a generation: {state: Float32Array[S], carry: Int32Array[2]}. */
  start() {
    return {state: new Float32Array(this.stateSize), carry: new Int32Array(this.carrySize)};
  }

  /**
   * One `generate_chunk` call: read prime (at most K units), then sample up to `length` (<= K) units, ending
   * after `stop` (a unit, or -1). Returns {units: the new units, state, carry} to pass to the next call.
   * Every input is checked here first: a wrong one is a DemoError, never a call that crashes the runtime.
   */
  async chunk({prime = [], length, state, carry, temperature, topK, topP, seed, stop = NO_STOP}) {
    this.check(prime, length, state, carry, stop);
    const primeBuffer = new Int32Array(this.chunkSize);
    primeBuffer.set(prime);
    const inputs = {
      prime: new Tensor(primeBuffer, [this.chunkSize]), prime_length: scalar(Int32Array, prime.length),
      length: scalar(Int32Array, length), state: new Tensor(Float32Array.from(state), [1, this.stateSize]),
      carry: new Tensor(Int32Array.from(carry), [this.carrySize]), temperature: scalar(Float32Array, temperature),
      top_k: scalar(Int32Array, topK), top_p: scalar(Float32Array, topP), seed: scalar(Int32Array, seed),
      stop: scalar(Int32Array, stop),
    };
    let out;
    try {
      out = await this.chunkSig.run(inputs);
    } finally {
      Object.values(inputs).forEach((t) => t.delete());
    }
    try {
      const valid = out.valid.toTypedArray()[0];
      return {units: out.codepoints.toTypedArray().slice(0, valid), state: out.state.toTypedArray(),
              carry: out.carry.toTypedArray()};
    } finally {
      Object.values(out).forEach((t) => t.delete());
    }
  }

  check(prime, length, state, carry, stop) {
    if (!(state instanceof Float32Array) || state.length !== this.stateSize) {
      throw new DemoError(`generate_chunk state must be ${this.stateSize} floats for this model, got ` +
                          `${state?.length}: pass the state the previous call returned, or zeros to start`);
    }
    if (!(carry instanceof Int32Array) || carry.length !== this.carrySize) {
      throw new DemoError(`generate_chunk carry must be ${this.carrySize} int32 values, got ${carry?.length}: ` +
                          `pass the carry the previous call returned, or zeros to start`);
    }
    this.checkCall(prime, length);
    this.checkStop(stop);
  }

  checkCall(prime, length) {
    const k = this.chunkSize;
    if (prime.length > k || !Number.isInteger(length) || length < 0 || length > k) {
      throw new DemoError(`generate_chunk takes at most ${k} prime units and a length in [0, ${k}], ` +
                          `got ${prime.length} and ${length}`);
    }
  }

  checkStop(stop) {
    if (stop !== NO_STOP && !this.index.has(stop)) {
      throw new DemoError(`stop unit ${stop} is not in the model's vocabulary, so it is never written: ` +
                          `pick one of its characters`);
    }
  }

  /** A `Stream` from zeros with these knobs: one generation, its tensors made once and fed back call to call. */
  stream(knobs) {
    return new Stream(this, knobs);
  }

  /**
   * Yield the sampled units (code points, or byte values for byte models) chunk by chunk, as
   * `python -m tfchar.sample` writes them: the prime's units (ids known to the model), then up to
   * `length` units, ending after the first occurrence of the units `stop` (the graph stops at its
   * last unit and this loop checks the whole sequence).
   */
  async* generate(prime, length, {temperature, topK, topP, seed, stop = []}) {
    const last = stop.length ? stop[stop.length - 1] : NO_STOP;
    const stream = this.stream({temperature, topK, topP, seed, stop: last});
    try {
      const pieces = [];
      for (let i = 0; i < prime.length; i += this.chunkSize) pieces.push(prime.slice(i, i + this.chunkSize));
      let piece = pieces.pop() ?? [];
      for (const p of pieces) await stream.next(p, 0);
      let done = 0;
      let tail = [];
      while (done < length) {
        const units = await stream.next(piece, Math.min(this.chunkSize, length - done));
        piece = [];
        done += units.length;
        yield units;
        if (stop.length) {
          tail = tail.concat(Array.from(units)).slice(-stop.length);
          const ends = units.length > 0 && units[units.length - 1] === last;
          if (ends && tail.length === stop.length && tail.every((u, i) => u === stop[i])) return;
        }
      }
    } finally {
      stream.delete();
    }
  }

  delete() {
    this.compiled.delete();
  }
}

/**
 * One generation's chained `generate_chunk` calls. The knobs' tensors are made once, and each call's output
 * state and carry go back in as the next call's input tensors without a copy through JavaScript: a call
 * then costs little more than the graph's own work.
 */
class Stream {
  constructor(model, {temperature, topK, topP, seed, stop = NO_STOP}) {
    model.checkStop(stop);
    this.model = model;
    const k = model.chunkSize;
    this.fixed = {temperature: scalar(Float32Array, temperature), top_k: scalar(Int32Array, topK),
                  top_p: scalar(Float32Array, topP), seed: scalar(Int32Array, seed), stop: scalar(Int32Array, stop)};
    this.noPrime = {prime: new Tensor(new Int32Array(k), [k]), prime_length: scalar(Int32Array, 0)};
    this.lengths = new Map(); // length -> its scalar tensor
    this.state = new Tensor(new Float32Array(model.stateSize), [1, model.stateSize]);
    this.carry = new Tensor(new Int32Array(model.carrySize), [model.carrySize]);
  }

  /** Read `prime` (at most K units), then sample up to `length` (<= K): the new units. */
  async next(prime, length) {
    const m = this.model;
    m.checkCall(prime, length);
    if (!this.lengths.has(length)) this.lengths.set(length, scalar(Int32Array, length));
    let primed = this.noPrime;
    if (prime.length) {
      const buffer = new Int32Array(m.chunkSize);
      buffer.set(prime);
      primed = {prime: new Tensor(buffer, [m.chunkSize]), prime_length: scalar(Int32Array, prime.length)};
    }
    let out;
    try {
      out = await m.chunkSig.run({...this.fixed, ...primed, length: this.lengths.get(length), state: this.state,
                                  carry: this.carry});
    } finally {
      if (primed !== this.noPrime) Object.values(primed).forEach((t) => t.delete());
    }
    this.state.delete();
    this.carry.delete();
    ({state: this.state, carry: this.carry} = out);
    const valid = out.valid.toTypedArray()[0];
    const units = out.codepoints.toTypedArray().slice(0, valid);
    out.valid.delete();
    out.codepoints.delete();
    return units;
  }

  delete() {
    [...Object.values(this.fixed), ...Object.values(this.noPrime), ...this.lengths.values(), this.state, this.carry]
        .forEach((t) => t.delete());
  }
}

function scalar(TypedArray, value) {
  return new Tensor(TypedArray.of(value), []);
}

function firstLine(e) {
  return String(e?.message ?? e).split('\n')[0].slice(0, 200);
}
