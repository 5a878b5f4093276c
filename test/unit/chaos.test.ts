// The fault suite's PRNG: a seed replays the same choices, and different seeds choose differently.
import assert from 'node:assert/strict';
import { mulberry32 } from '../chaos/chaos.js';

describe('chaos PRNG (mulberry32)', () => {
  it('replays the same sequence for a seed, in [0, 1), and a different one for another seed', () => {
    const draw = (seed: number) => {
      const next = mulberry32(seed);
      return Array.from({ length: 1000 }, () => next());
    };
    const a = draw(20261202);
    assert.deepEqual(draw(20261202), a);
    assert.notDeepEqual(draw(7), a);
    assert.ok(a.every((x) => x >= 0 && x < 1));
    // Roughly uniform: each tenth of [0, 1) gets a fair share of 1000 draws.
    for (let d = 0; d < 10; d++) {
      const n = a.filter((x) => x >= d / 10 && x < (d + 1) / 10).length;
      assert.ok(n > 60 && n < 140, `decile ${d} has ${n} draws`);
    }
  });
});
