// tfchar's sampler (tfchar/ops/rng.py, tfchar/ops/draw.py) in JavaScript, step for step, so a seed gives the same text in
// the browser as `python -m tfchar.sample MODEL --seed S`: the Park-Miller generator, u = top 24 bits of
// its state, and an inverse CDF over the logits sorted high to low, with every float op rounded to
// float32 (Math.fround) in the order the TFLite graph does it.

const MODULUS = 2147483647; // 2^31 - 1
const MULTIPLIER = 16807;
const Q = Math.floor(MODULUS / MULTIPLIER);
const R = MODULUS % MULTIPLIER;
const WARMUP = 4; // steps after seeding, as sampler.WARMUP
const f = Math.fround;

/** One generator step: a state in [1, 2^31 - 2] -> the next state. */
export function nextRng(x) {
  const hi = Math.floor(x / Q);
  const y = MULTIPLIER * (x - hi * Q) - R * hi;
  return y > 0 ? y : y + MODULUS;
}

/** Generator state for an int32 seed (negative too), as sampler.seed_rng. */
export function seedRng(seed) {
  let x = (((seed % (MODULUS - 1)) + (MODULUS - 1)) % (MODULUS - 1)) + 1; // floormod, like TF
  for (let i = 0; i < WARMUP; i++) x = nextRng(x);
  return x;
}

/** The state's top 24 bits as a uniform in [0, 1), exact in float32. */
export function uniform(x) {
  return Math.floor(x / 128) / (1 << 24);
}

/** Loop-invariant knobs, as sampler.settings: temperature <= 0 is greedy, top_k 0 / top_p 1 are off. */
export function settings(temperature, topK, topP, vocabSize) {
  const greedy = temperature <= 0;
  return {
    invTemperature: greedy ? 1 : f(1 / f(temperature)),
    uScale: greedy ? 0 : 1, // u = 0 picks rank 0: the argmax
    k: topK > 0 ? Math.min(topK, vocabSize) : vocabSize,
    p: topP >= 1 ? 2 : f(topP), // 2: no rank is cut by rounding
  };
}

/** One token id from logits (Float32Array[V]) and a uniform u, as sampler.draw. */
export function draw(logits, u, s) {
  const v = logits.length;
  // High to low; ties keep the lower id first, as TFLite's TOPK_V2.
  const order = Array.from({length: v}, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  const top = logits[order[0]];
  const cdf = new Float32Array(v); // float32 storage rounds each partial sum, as TF's cumsum
  let sum = 0;
  for (let r = 0; r < v; r++) {
    const e = r < s.k ? f(Math.exp(f(f(logits[order[r]] - top) * s.invTemperature))) : 0;
    cdf[r] = sum = f(sum + e);
  }
  const limit = f(s.p * cdf[v - 1]);
  let keep = 1; // nucleus: rank r stays while the mass before it is below p of the total
  for (let r = 0; r < v; r++) if (cdf[r] < limit) keep++;
  keep = Math.min(keep, s.k);
  const threshold = f(f(u * s.uScale) * cdf[keep - 1]);
  let pick = 0; // rank of the first cdf above the threshold
  for (let r = 0; r < v; r++) if (cdf[r] <= threshold) pick++;
  return order[Math.min(pick, keep - 1)];
}
