import assert from 'node:assert/strict';
import { renderChart, type ChartInput } from '../bench/chart.js';
import { percentile } from '../bench/stats.js';

const empty: ChartInput = { title: 'empty', issued: [], revoked: [], latenciesMs: [], rss: [] };

/** Every opened element is closed in order (a tiny well-formedness check: tags, not full XML). */
function assertBalanced(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the element that is open`);
    else stack.push(name!);
  }
  assert.deepEqual(stack, [], 'every element is closed');
  // Text outside tags holds no raw '<' and only entity ampersands.
  assert.doesNotMatch(svg.replace(/<[^>]*>/g, ''), /<|&(?!(amp|lt|gt|quot);)/);
}

function assertValidSvg(svg: string): void {
  assert.ok(svg.startsWith('<svg'), 'starts with <svg');
  assert.ok(svg.endsWith('</svg>'), 'ends with </svg>');
  assert.equal((svg.match(/<g[\s>]/g) ?? []).length, (svg.match(/<\/g>/g) ?? []).length);
  assertBalanced(svg);
  assert.doesNotMatch(svg, /NaN|Infinity/);
}

/** The markup of one panel (panels hold no nested groups). */
function panelOf(svg: string, name: string): string {
  const start = svg.indexOf(`<g data-panel="${name}">`);
  assert.ok(start >= 0, `panel ${name} is drawn`);
  return svg.slice(start, svg.indexOf('</g>', start));
}

function seriesPoints(panel: string, series: string): Array<[number, number]> {
  const m = panel.match(new RegExp(`<polyline data-series="${series}" points="([^"]*)"`));
  assert.ok(m, `series ${series} is drawn`);
  return m[1]!.split(' ').map((pair) => pair.split(',').map(Number) as [number, number]);
}

/** Maps an SVG coordinate back to a data value through the panel's own grid lines on that axis. */
function valueOf(panel: string, axis: 'x' | 'y', coordinate: number): number {
  const ticks = [...panel.matchAll(new RegExp(`<line data-tick="${axis}" data-value="([^"]+)"[^>]* ${axis}1="([^"]+)"`, 'g'))]
    .map((m) => ({ value: Number(m[1]), at: Number(m[2]) }));
  assert.ok(ticks.length >= 3 && ticks.length <= 8, `about five ${axis} ticks, got ${ticks.length}`);
  const a = ticks[0]!;
  const b = ticks[ticks.length - 1]!;
  return a.value + ((coordinate - a.at) / (b.at - a.at)) * (b.value - a.value);
}
const yValueOf = (panel: string, py: number): number => valueOf(panel, 'y', py);

describe('bench chart', () => {
  const full: ChartInput = {
    title: 'dbcred-operator bench, N=200, 2026-12-03',
    issued: Array.from({ length: 200 }, (_, i) => 500 + i * 37),
    revoked: Array.from({ length: 150 }, (_, i) => 9000 + i * 20),
    floorIssued: Array.from({ length: 200 }, (_, i) => 300 + i * 25),
    latenciesMs: Array.from({ length: 200 }, (_, i) => 120 + ((i * 7919) % 200) * 4),
    floorLatenciesMs: Array.from({ length: 200 }, (_, i) => 80 + (i % 50) * 3),
    rss: Array.from({ length: 120 }, (_, i) => ({ t: i * 100, mib: 40 + (i % 10) })),
    rssLimitMiB: 80,
    phases: [{ name: 'issue', startMs: 0, endMs: 7900 }, { name: 'expire & revoke', startMs: 7900, endMs: 12000 }],
  };

  it('renders a well-formed SVG with finite numbers for a full run', () => {
    const svg = renderChart(full);
    assertValidSvg(svg);
    for (const name of ['events', 'latency', 'rss']) assert.doesNotMatch(panelOf(svg, name), /no data/);
    assert.match(svg, /limit 80 MiB/);
    assert.match(svg, /expire &amp; revoke/);
  });

  it('escapes the title', () => {
    const svg = renderChart({ ...empty, title: 'a<b&c "q"' });
    assert.match(svg, />a&lt;b&amp;c &quot;q&quot;</);
    assert.doesNotMatch(svg, /a<b/);
    assertValidSvg(svg);
  });

  it('ends the cumulative issued line at the number of Secrets issued', () => {
    const panel = panelOf(renderChart(full), 'events');
    for (const [series, count] of [['issued', 200], ['revoked', 150], ['floor-issued', 200]] as const) {
      const points = seriesPoints(panel, series);
      assert.equal(Math.round(yValueOf(panel, points[0]![1])), 0, `${series} starts at zero`);
      assert.equal(Math.round(yValueOf(panel, points[points.length - 1]![1])), count, `${series} ends at ${count}`);
    }
  });

  it('keeps the last event when a long event series is downsampled', () => {
    // 2,499 events in the first 7.5 s, then one straggler at 60 s: the line must still end there, at 2,500.
    const issued = [...Array.from({ length: 2499 }, (_, i) => i * 3), 60_000];
    const panel = panelOf(renderChart({ ...empty, issued }), 'events');
    const points = seriesPoints(panel, 'issued');
    assert.ok(points.length <= 2001, `${points.length} vertices`);
    const [x, y] = points[points.length - 1]!;
    assert.ok(Math.abs(valueOf(panel, 'x', x) - 60) < 0.1, `ends at ${valueOf(panel, 'x', x)} s`);
    assert.ok(Math.abs(yValueOf(panel, y) - 2500) < 1, `ends at count ${yValueOf(panel, y)}`);
    assert.ok(Math.abs(yValueOf(panel, points[points.length - 2]![1]) - 2499) < 20, 'the straggler is a step up from the count before it');
  });

  it('says "no data" in each of the three panels for an empty run', () => {
    const svg = renderChart(empty);
    assertValidSvg(svg);
    assert.equal((svg.match(/no data/g) ?? []).length, 3);
    for (const name of ['events', 'latency', 'rss']) assert.match(panelOf(svg, name), /no data/);
  });

  it('ignores non-finite samples instead of printing NaN', () => {
    const svg = renderChart({
      ...empty, issued: [NaN, 10, Infinity], latenciesMs: [5, NaN], rss: [{ t: NaN, mib: 3 }, { t: 1, mib: Infinity }],
      rssLimitMiB: NaN, phases: [{ name: 'x', startMs: -Infinity, endMs: 5 }],
    });
    assertValidSvg(svg);
    assert.equal((svg.match(/no data/g) ?? []).length, 1, 'only the RSS panel, whose samples are all invalid, is empty');
  });

  it('labels the p50 and p99 markers with the percentiles of the latencies', () => {
    const svg = renderChart(full);
    const sorted = [...full.latenciesMs].sort((a, b) => a - b);
    for (const name of ['p50', 'p99']) {
      const expected = percentile(sorted, name === 'p50' ? 50 : 99);
      const line = svg.match(new RegExp(`<line data-marker="${name}" data-value="([^"]+)"`));
      assert.equal(Number(line?.[1]), expected);
      const label = svg.match(new RegExp(`<text data-marker="${name}"[^>]*>([^<]*)<`));
      assert.equal(label?.[1], `${name} ${expected} ms`);
    }
    const panel = panelOf(svg, 'latency');
    const bars = [...panel.matchAll(/data-series="latency" data-count="(\d+)"/g)];
    assert.ok(bars.length > 10 && bars.length <= 30, `${bars.length} bins`);
    assert.equal(bars.reduce((sum, m) => sum + Number(m[1]), 0), full.latenciesMs.length, 'every latency is in a bin');
    seriesPoints(panel, 'floor-latency');
  });

  it('downsamples a 100k-point RSS series and keeps its peak', () => {
    const rss = Array.from({ length: 100_000 }, (_, i) => ({ t: i * 50, mib: 40 + (i % 17) / 2 }));
    rss[61_234] = { t: 61_234 * 50, mib: 123.4 };
    const svg = renderChart({ ...empty, rss, rssLimitMiB: 80 });
    assertValidSvg(svg);
    const panel = panelOf(svg, 'rss');
    const points = seriesPoints(panel, 'rss');
    assert.ok(points.length <= 2000, `${points.length} vertices`);
    const top = Math.min(...points.map(([, y]) => y));
    assert.ok(Math.abs(yValueOf(panel, top) - 123.4) < 0.2, `the highest vertex is the 123.4 MiB peak, got ${yValueOf(panel, top)}`);
    const xs = [...panel.matchAll(/<line data-tick="x" data-value="([^"]+)" x1="([^"]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
    assert.ok(xs.length >= 3 && xs.length <= 8, `about five x ticks, got ${xs.length}`);
    const step = xs[1]![0]! - xs[0]![0]!;
    assert.match(String(step), /^[125]0*$/, 'ticks at multiples of 1, 2 or 5 × 10^k');
    xs.forEach(([value], i) => assert.equal(value, xs[0]![0]! + i * step, 'evenly spaced ticks'));
  });
});
