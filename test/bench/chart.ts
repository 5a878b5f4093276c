// Renders one benchmark run as a single self-contained SVG (no dependency), so a run can be read at a glance and
// attached to a report as one file: cumulative issue/revoke counts, the create→Secret latency histogram, operator RSS.
import { percentile } from './stats.js';

export interface ChartInput {
  title: string;
  /** Event times in ms since the run's t0, drawn as cumulative step lines. */
  issued: number[];
  revoked: number[];
  /** The straight-line floor's Secret times, its own t0 already subtracted (dashed). */
  floorIssued?: number[];
  /** create→Secret latencies (ms): a histogram with p50/p99 markers. */
  latenciesMs: number[];
  floorLatenciesMs?: number[];
  /** Operator RSS samples (ms since t0, MiB). */
  rss: Array<{ t: number; mib: number }>;
  rssLimitMiB?: number;
  phases?: Array<{ name: string; startMs: number; endMs: number }>;
}

interface Point { x: number; y: number }
interface Domain { lo: number; hi: number; ticks: number[] }
interface Frame { left: number; top: number; width: number; height: number } // a plot area in SVG coordinates
interface LegendEntry { label: string; colour: string; dash?: string; filled?: boolean }
type Phase = NonNullable<ChartInput['phases']>[number];

const WIDTH = 900;
const TITLE_HEIGHT = 40;
const PANEL_HEIGHT = 285;
const MARGIN = { left: 70, right: 20, top: 34, bottom: 46 };
// A browser stays responsive with a few thousand vertices; more adds nothing at 900 px wide.
const MAX_POINTS = 2000;
const BINS = 30;
const HEADROOM = 0.05;
const COLOUR = { issued: '#1f77b4', revoked: '#d62728', floor: '#7f7f7f', rss: '#2ca02c', limit: '#ff7f0e', p50: '#333333' };

export function renderChart(input: ChartInput): string {
  const issued = seconds(input.issued);
  const revoked = seconds(input.revoked);
  const floorIssued = seconds(input.floorIssued ?? []);
  const rss = input.rss.filter((s) => Number.isFinite(s.t) && Number.isFinite(s.mib))
    .map((s) => ({ x: s.t / 1000, y: s.mib })).sort((a, b) => a.x - b.x);
  const phases = (input.phases ?? []).filter((p) => Number.isFinite(p.startMs) && Number.isFinite(p.endMs));
  // Both time panels share one axis so that a phase, a burst of issues and an RSS step line up vertically.
  const time = niceDomain([issued, revoked, floorIssued, rss.map((p) => p.x), phases.flatMap((p) => [p.startMs / 1000, p.endMs / 1000])]);
  const limit = input.rssLimitMiB !== undefined && Number.isFinite(input.rssLimitMiB) ? input.rssLimitMiB : undefined;
  const height = TITLE_HEIGHT + 3 * PANEL_HEIGHT;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${MARGIN.left}" y="26" font-size="16" font-weight="bold">${escapeXml(input.title)}</text>`,
    eventsPanel(frameOf(0), time, issued, revoked, floorIssued, phases),
    latencyPanel(frameOf(1), finite(input.latenciesMs).sort((a, b) => a - b), finite(input.floorLatenciesMs ?? [])),
    rssPanel(frameOf(2), time, rss, limit, phases),
    '</svg>',
  ].join('\n');
}

function eventsPanel(f: Frame, time: Domain, issued: number[], revoked: number[], floor: number[], phases: Phase[]): string {
  const heading = 'Credentials over time (cumulative)';
  const series = [
    { name: 'issued', label: 'Secrets issued', times: issued, colour: COLOUR.issued, dash: '' },
    { name: 'revoked', label: 'roles revoked', times: revoked, colour: COLOUR.revoked, dash: '' },
    { name: 'floor-issued', label: 'floor: Secrets issued', times: floor, colour: COLOUR.floor, dash: '6 4' },
  ].filter((s) => s.times.length > 0);
  if (series.length === 0) return emptyPanel('events', f, heading);
  const count = niceDomain([series.map((s) => s.times.length)], HEADROOM);
  const lines = series.map((s) => polyline(s.name, stepPoints(s.times), f, time, count, s.colour, s.dash));
  return panel('events', f, heading, [
    ...phaseBands(f, time, phases), ...axes(f, time, count, 'time since start (s)', 'count'), ...lines, ...legend(f, series),
  ]);
}

function latencyPanel(f: Frame, latencies: number[], floor: number[]): string {
  const heading = 'create → Secret latency';
  if (latencies.length === 0 && floor.length === 0) return emptyPanel('latency', f, heading);
  const x = niceDomain([latencies, floor]);
  const binWidth = (x.hi - x.lo) / BINS;
  const histogram = (values: number[]): number[] => {
    const counts = new Array<number>(BINS).fill(0);
    for (const v of values) counts[Math.min(BINS - 1, Math.floor((v - x.lo) / binWidth))]! += 1;
    return counts;
  };
  const [operator, floorCounts] = [histogram(latencies), histogram(floor)];
  const y = niceDomain([operator, floorCounts], HEADROOM);
  const body = axes(f, x, y, 'latency (ms)', 'credentials per bin');
  operator.forEach((c, i) => {
    if (c === 0) return;
    const [x1, x2, top] = [toPx(x, f, x.lo + i * binWidth), toPx(x, f, x.lo + (i + 1) * binWidth), toPy(y, f, c)];
    body.push(`<rect data-series="latency" data-count="${c}" x="${px(x1)}" y="${px(top)}" width="${px(Math.max(0.5, x2 - x1 - 1))}" height="${px(toPy(y, f, 0) - top)}" fill="${COLOUR.issued}" fill-opacity="0.6"/>`);
  });
  const entries: LegendEntry[] = [{ label: 'operator', colour: COLOUR.issued, filled: true }];
  if (floor.length > 0) {
    // The floor as an outline so that both distributions stay visible where they overlap.
    const outline = floorCounts.flatMap((c, i) => [{ x: x.lo + i * binWidth, y: c }, { x: x.lo + (i + 1) * binWidth, y: c }]);
    body.push(polyline('floor-latency', [{ x: x.lo, y: 0 }, ...outline, { x: x.hi, y: 0 }], f, x, y, COLOUR.floor, ''));
    entries.push({ label: 'floor', colour: COLOUR.floor });
  }
  if (latencies.length > 0) body.push(...marker(f, x, 'p50', percentile(latencies, 50), COLOUR.p50, 14), ...marker(f, x, 'p99', percentile(latencies, 99), COLOUR.revoked, 28));
  return panel('latency', f, heading, [...body, ...legend(f, entries)]);
}

function rssPanel(f: Frame, time: Domain, rss: Point[], limit: number | undefined, phases: Phase[]): string {
  const heading = 'Operator memory (RSS)';
  if (rss.length === 0) return emptyPanel('rss', f, heading);
  const points = downsampleMax(rss, MAX_POINTS);
  const y = niceDomain([points.map((p) => p.y), limit === undefined ? [] : [limit]], HEADROOM);
  const body = [...phaseBands(f, time, phases), ...axes(f, time, y, 'time since start (s)', 'RSS (MiB)'), polyline('rss', points, f, time, y, COLOUR.rss, '')];
  const entries: LegendEntry[] = [{ label: 'operator RSS', colour: COLOUR.rss }];
  if (limit !== undefined) {
    const ly = px(toPy(y, f, limit));
    body.push(`<line data-series="rss-limit" data-value="${limit}" x1="${f.left}" x2="${f.left + f.width}" y1="${ly}" y2="${ly}" stroke="${COLOUR.limit}" stroke-dasharray="6 4"/>`);
    body.push(`<text x="${f.left + f.width - 4}" y="${px(toPy(y, f, limit) - 4)}" text-anchor="end" fill="${COLOUR.limit}">limit ${formatValue(limit)} MiB</text>`);
    entries.push({ label: 'limit', colour: COLOUR.limit, dash: '6 4' });
  }
  return panel('rss', f, heading, [...body, ...legend(f, entries)]);
}

/** A vertical line at a percentile, labelled with its value; `dy` staggers labels that could overlap. */
function marker(f: Frame, x: Domain, name: string, value: number, colour: string, dy: number): string[] {
  const mx = toPx(x, f, value);
  // Near the right edge the label goes on the line's left so that it stays inside the plot.
  const [lx, anchor] = mx > f.left + 0.85 * f.width ? [mx - 4, 'end'] : [mx + 4, 'start'];
  return [
    `<line data-marker="${name}" data-value="${value}" x1="${px(mx)}" x2="${px(mx)}" y1="${f.top}" y2="${f.top + f.height}" stroke="${colour}" stroke-dasharray="4 3"/>`,
    `<text data-marker="${name}" x="${px(lx)}" y="${f.top + dy}" text-anchor="${anchor}" fill="${colour}">${name} ${formatValue(value)} ms</text>`,
  ];
}

/** Cumulative count as a step line from t0: each event lifts the count by one at its time. */
function stepPoints(sortedTimes: number[]): Point[] {
  // Half the budget: every kept event becomes two vertices.
  const events = downsampleMax(sortedTimes.map((t, i) => ({ x: t, y: i + 1 })), MAX_POINTS / 2);
  const points: Point[] = [{ x: Math.min(0, events[0]?.x ?? 0), y: 0 }];
  for (const e of events) points.push({ x: e.x, y: points[points.length - 1]!.y }, e);
  return points;
}

/**
 * Keeps the first and last points and, within each bucket in between, the highest one: a memory spike or the
 * final count must survive downsampling, an average would hide it.
 */
function downsampleMax(points: Point[], limit: number): Point[] {
  if (points.length <= limit) return points;
  const last = points.length - 1;
  const size = Math.ceil((points.length - 2) / (limit - 2));
  const kept = [points[0]!];
  for (let start = 1; start < last; start += size) {
    let best = points[start]!;
    for (let i = start + 1; i < Math.min(start + size, last); i++) if (points[i]!.y >= best.y) best = points[i]!;
    kept.push(best);
  }
  kept.push(points[last]!);
  return kept;
}

/**
 * An axis from the data's extent (always including 0) widened to ticks at 1, 2 or 5 × 10^k, about five of them.
 * `headroom` (a fraction of the extent) keeps a maximum or a limit line off the plot's top edge.
 */
function niceDomain(lists: ReadonlyArray<number>[], headroom = 0): Domain {
  let lo = 0;
  let hi = 0;
  for (const list of lists) for (const v of list) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  hi = hi > lo ? hi + (hi - lo) * headroom : lo + 1;
  const raw = (hi - lo) / 5;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
  const first = Math.floor(lo / step);
  const last = Math.ceil(hi / step);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(clean(i * step));
  return { lo: clean(first * step), hi: clean(last * step), ticks };
}

function axes(f: Frame, x: Domain, y: Domain, xLabel: string, yLabel: string): string[] {
  const bottom = f.top + f.height;
  const out: string[] = [];
  for (const t of x.ticks) {
    const tx = px(toPx(x, f, t));
    out.push(`<line data-tick="x" data-value="${t}" x1="${tx}" x2="${tx}" y1="${f.top}" y2="${bottom}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${tx}" y="${bottom + 16}" text-anchor="middle">${t}</text>`);
  }
  for (const t of y.ticks) {
    const ty = px(toPy(y, f, t));
    out.push(`<line data-tick="y" data-value="${t}" x1="${f.left}" x2="${f.left + f.width}" y1="${ty}" y2="${ty}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${f.left - 6}" y="${px(toPy(y, f, t) + 4)}" text-anchor="end">${t}</text>`);
  }
  out.push(`<rect x="${f.left}" y="${f.top}" width="${f.width}" height="${f.height}" fill="none" stroke="#999999"/>`);
  out.push(`<text x="${f.left + f.width / 2}" y="${bottom + 36}" text-anchor="middle">${escapeXml(xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${f.top + f.height / 2}) rotate(-90)" text-anchor="middle">${escapeXml(yLabel)}</text>`);
  return out;
}

/** Shaded bands for the run's phases, clipped to the time axis, alternating shades so neighbours stay distinct. */
function phaseBands(f: Frame, time: Domain, phases: Phase[]): string[] {
  return phases.flatMap((p, i) => {
    const x1 = toPx(time, f, Math.max(time.lo, p.startMs / 1000));
    const x2 = toPx(time, f, Math.min(time.hi, p.endMs / 1000));
    if (!(x2 > x1)) return [];
    return [
      `<rect data-phase="${escapeXml(p.name)}" x="${px(x1)}" y="${f.top}" width="${px(x2 - x1)}" height="${f.height}" fill="#000000" fill-opacity="${i % 2 === 0 ? 0.05 : 0.1}"/>`,
      `<text x="${px(x1 + 3)}" y="${f.top + 12}" fill="#555555" font-size="10">${escapeXml(p.name)}</text>`,
    ];
  });
}

function legend(f: Frame, entries: LegendEntry[]): string[] {
  const y = f.top - 12;
  return entries.flatMap((e, i) => {
    const x = f.left + f.width - (entries.length - i) * 150;
      return [
      `<line x1="${x}" x2="${x + 20}" y1="${y}" y2="${y}" stroke="${e.colour}" stroke-width="${e.filled ? 8 : 2}"${dashAttr(e.dash)}/>`,
      `<text x="${x + 26}" y="${y + 4}">${escapeXml(e.label)}</text>`,
    ];
  });
}

function polyline(series: string, points: Point[], f: Frame, x: Domain, y: Domain, colour: string, dash: string): string {
  const coords = points.map((p) => `${px(toPx(x, f, p.x))},${px(toPy(y, f, p.y))}`).join(' ');
  return `<polyline data-series="${series}" points="${coords}" fill="none" stroke="${colour}" stroke-width="1.5"${dashAttr(dash)}/>`;
}

function panel(name: string, f: Frame, heading: string, body: string[]): string {
  const title = `<text x="${f.left}" y="${f.top - 12}" font-weight="bold">${escapeXml(heading)}</text>`;
  return [`<g data-panel="${name}">`, title, ...body, '</g>'].join('\n');
}

function emptyPanel(name: string, f: Frame, heading: string): string {
  return panel(name, f, heading, [
    `<rect x="${f.left}" y="${f.top}" width="${f.width}" height="${f.height}" fill="none" stroke="#999999"/>`,
    `<text x="${f.left + f.width / 2}" y="${f.top + f.height / 2}" text-anchor="middle" fill="#999999">no data</text>`,
  ]);
}

function frameOf(index: number): Frame {
  const top = TITLE_HEIGHT + index * PANEL_HEIGHT + MARGIN.top;
  return { left: MARGIN.left, top, width: WIDTH - MARGIN.left - MARGIN.right, height: PANEL_HEIGHT - MARGIN.top - MARGIN.bottom };
}

const toPx = (d: Domain, f: Frame, v: number): number => f.left + ((v - d.lo) / (d.hi - d.lo)) * f.width;
const toPy = (d: Domain, f: Frame, v: number): number => f.top + f.height - ((v - d.lo) / (d.hi - d.lo)) * f.height;
const px = (v: number): string => v.toFixed(1);
const dashAttr = (dash: string | undefined): string => (dash ? ` stroke-dasharray="${dash}"` : '');
/** Removes binary noise from tick values (0.30000000000000004 → 0.3). */
const clean = (v: number): number => Number(v.toPrecision(12));
const finite = (values: readonly number[]): number[] => values.filter((v) => Number.isFinite(v));
const seconds = (ms: readonly number[]): number[] => finite(ms).map((v) => v / 1000).sort((a, b) => a - b);

/** Whole numbers from 100 up, three significant digits below (a label, not a measurement record). */
function formatValue(v: number): string {
  return Math.abs(v) >= 100 ? String(Math.round(v)) : String(Number(v.toPrecision(3)));
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
