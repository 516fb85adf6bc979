// A minimal line-chart rasteriser: white canvas, axes with ticks and 5x7-font labels, up to a handful of
// coloured series (lines + square markers; a null value breaks the line), a legend and a title. The x axis
// is categorical (equally spaced labelled points: context lengths, concurrency levels); the y axis is
// linear from 0 with "nice" ticks (1, 2, 5 x 10^k). Output: PNG bytes via ./png.ts.
import { ADVANCE, GLYPH_HEIGHT, GLYPH_WIDTH, glyph } from './font5x7.ts';
import { encodePng } from './png.ts';

export type Rgb = readonly [number, number, number];

export const PALETTE: readonly Rgb[] = [
  [31, 119, 180], // blue
  [214, 39, 40], // red
  [44, 160, 44], // green
  [255, 127, 14], // orange
  [148, 103, 189], // purple
  [23, 190, 207], // cyan
];

export class Canvas {
  readonly rgb: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = [255, 255, 255],
  ) {
    this.rgb = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.rgb.set(background, i * 3);
  }

  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.rgb.set(c, (y * this.width + x) * 3);
  }

  get(x: number, y: number): Rgb {
    const i = (y * this.width + x) * 3;
    return [this.rgb[i]!, this.rgb[i + 1]!, this.rgb[i + 2]!];
  }

  fillRect(x: number, y: number, w: number, h: number, c: Rgb): void {
    for (let j = Math.round(y); j < Math.round(y + h); j++) for (let i = Math.round(x); i < Math.round(x + w); i++) this.set(i, j, c);
  }

  /** A line of the given thickness (Bresenham with a square brush). */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thickness = 1): void {
    [x0, y0, x1, y1] = [Math.round(x0), Math.round(y0), Math.round(x1), Math.round(y1)];
    const dx = Math.abs(x1 - x0);
    const dy = -Math.abs(y1 - y0);
    const sx = x0 < x1 ? 1 : -1;
    const sy = y0 < y1 ? 1 : -1;
    let err = dx + dy;
    const lo = -Math.floor((thickness - 1) / 2);
    for (;;) {
      for (let a = 0; a < thickness; a++) for (let b = 0; b < thickness; b++) this.set(x0 + lo + a, y0 + lo + b, c);
      if (x0 === x1 && y0 === y1) break;
      const e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        x0 += sx;
      }
      if (e2 <= dx) {
        err += dx;
        y0 += sy;
      }
    }
  }

  /** Dashed horizontal or vertical grid line. */
  dashed(x0: number, y0: number, x1: number, y1: number, c: Rgb, on = 3, off = 3): void {
    const n = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0));
    for (let i = 0; i <= n; i++) if (i % (on + off) < on) this.set(x0 + ((x1 - x0) * i) / (n || 1), y0 + ((y1 - y0) * i) / (n || 1), c);
  }

  /** Draws `text` with its top-left corner at (x, y). */
  text(x: number, y: number, text: string, c: Rgb, scale = 1): void {
    let cx = Math.round(x);
    for (const ch of text) {
      const rows = glyph(ch);
      for (let r = 0; r < GLYPH_HEIGHT; r++) {
        for (let col = 0; col < GLYPH_WIDTH; col++) {
          if (rows[r]! & (0x10 >> col)) this.fillRect(cx + col * scale, y + r * scale, scale, scale, c);
        }
      }
      cx += ADVANCE * scale;
    }
  }

  /** Text drawn rotated 90 degrees counter-clockwise (reads bottom to top), (x, y) = its bottom-left. */
  textUp(x: number, y: number, text: string, c: Rgb, scale = 1): void {
    let cy = Math.round(y);
    for (const ch of text) {
      const rows = glyph(ch);
      for (let r = 0; r < GLYPH_HEIGHT; r++) {
        for (let col = 0; col < GLYPH_WIDTH; col++) {
          if (rows[r]! & (0x10 >> col)) this.fillRect(x + r * scale, cy - (col + 1) * scale, scale, scale, c);
        }
      }
      cy -= ADVANCE * scale;
    }
  }

  png(): Buffer {
    return encodePng(this.width, this.height, this.rgb);
  }
}

export function textWidth(text: string, scale = 1): number {
  return text.length === 0 ? 0 : ([...text].length * ADVANCE - 1) * scale;
}

/** Tick step of roughly `max / approxTicks` rounded to 1, 2 or 5 x 10^k. */
export function niceStep(max: number, approxTicks = 5): number {
  if (!(max > 0)) return 1;
  const raw = max / approxTicks;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const m = raw / pow;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * pow;
}

/** Short tick label: 12000 -> "12k", 1500 -> "1.5k", 0.25 -> "0.25". */
export function tickLabel(v: number): string {
  const trim = (s: string): string => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);
  if (Math.abs(v) >= 1e6) return `${trim((v / 1e6).toFixed(1))}M`;
  if (Math.abs(v) >= 1e4) return `${trim((v / 1e3).toFixed(1))}k`;
  if (Math.abs(v) >= 1 || v === 0) return trim(v.toFixed(2));
  return trim(v.toPrecision(2));
}

export interface Series {
  readonly name: string;
  /** One value per category; null = not measured (breaks the line). */
  readonly values: readonly (number | null)[];
  readonly color?: Rgb;
  readonly dashed?: boolean;
}

export interface LineChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly categories: readonly string[];
  readonly series: readonly Series[];
  readonly width?: number;
  readonly height?: number;
  /** Optional note drawn under the x axis label (small). */
  readonly note?: string;
}

const BLACK: Rgb = [0, 0, 0];
const GREY: Rgb = [120, 120, 120];
const GRID: Rgb = [215, 215, 215];

/** Renders the chart and returns the canvas (call .png() for the file bytes). */
export function renderLineChart(spec: LineChartSpec): Canvas {
  const W = spec.width ?? 900;
  const H = spec.height ?? 540;
  const S = 2; // font scale for labels
  const cv = new Canvas(W, H);
  const left = 90;
  const right = 24;
  const top = 56;
  const bottom = spec.note ? 96 : 78;
  const pw = W - left - right;
  const ph = H - top - bottom;

  cv.text((W - textWidth(spec.title, S)) / 2, 14, spec.title, BLACK, S);

  const all = spec.series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const dataMax = all.length ? Math.max(...all) : 1;
  const step = niceStep(dataMax * 1.08, 5);
  const yMax = Math.max(step, Math.ceil((dataMax * 1.08) / step) * step);
  const yPix = (v: number): number => top + ph - (v / yMax) * ph;
  const n = spec.categories.length;
  const xPix = (i: number): number => left + (n === 1 ? pw / 2 : 30 + (i * (pw - 60)) / (n - 1));

  // grid and y ticks
  for (let v = 0; v <= yMax + step / 2; v += step) {
    const y = Math.round(yPix(v));
    if (v > 0) cv.dashed(left + 1, y, left + pw, y, GRID);
    cv.line(left - 6, y, left, y, BLACK);
    const label = tickLabel(v);
    cv.text(left - 10 - textWidth(label, S), y - (GLYPH_HEIGHT * S) / 2, label, BLACK, S);
  }
  // x ticks
  spec.categories.forEach((c, i) => {
    const x = Math.round(xPix(i));
    cv.dashed(x, top, x, top + ph - 1, GRID);
    cv.line(x, top + ph, x, top + ph + 6, BLACK);
    cv.text(x - textWidth(c, S) / 2, top + ph + 12, c, BLACK, S);
  });
  // axes
  cv.line(left, top, left, top + ph, BLACK, 2);
  cv.line(left, top + ph, left + pw, top + ph, BLACK, 2);
  cv.text(left + (pw - textWidth(spec.xLabel, S)) / 2, top + ph + 12 + GLYPH_HEIGHT * S + 12, spec.xLabel, BLACK, S);
  cv.textUp(14, top + (ph + textWidth(spec.yLabel, S)) / 2, spec.yLabel, BLACK, S);
  if (spec.note) cv.text(left, H - 22, spec.note, GREY, 1);

  // series
  spec.series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length]!;
    let prev: [number, number] | null = null;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) {
        prev = null;
        return;
      }
      const p: [number, number] = [xPix(i), yPix(v)];
      if (prev) {
        if (s.dashed) {
          const segs = 14;
          for (let j = 0; j < segs; j += 2) {
            const a = j / segs;
            const b = (j + 1) / segs;
            cv.line(prev[0] + (p[0] - prev[0]) * a, prev[1] + (p[1] - prev[1]) * a, prev[0] + (p[0] - prev[0]) * b, prev[1] + (p[1] - prev[1]) * b, color, 3);
          }
        } else cv.line(prev[0], prev[1], p[0], p[1], color, 3);
      }
      cv.fillRect(p[0] - 4, p[1] - 4, 9, 9, color);
      prev = p;
    });
  });

  // legend: the corner of the plot area that covers the fewest series pixels
  const rowH = GLYPH_HEIGHT * S + 8;
  const lw = Math.max(...spec.series.map((s) => textWidth(s.name, S))) + 50;
  const lh = spec.series.length * rowH + 8;
  const colors = spec.series.map((s, k) => s.color ?? PALETTE[k % PALETTE.length]!);
  const covered = (x0: number, y0: number): number => {
    let count = 0;
    for (let y = Math.max(0, y0); y < Math.min(H, y0 + lh); y++) {
      for (let x = Math.max(0, x0); x < Math.min(W, x0 + lw); x++) {
        const [r, g, b] = cv.get(x, y);
        if (colors.some((c) => c[0] === r && c[1] === g && c[2] === b)) count++;
      }
    }
    return count;
  };
  const corners: [number, number][] = [
    [left + pw - lw - 8, top + 8],
    [left + 12, top + 8],
    [left + pw - lw - 8, top + ph - lh - 8],
    [left + 12, top + ph - lh - 8],
  ];
  const [lx, ly] = corners.map((c) => ({ c, n: covered(c[0], c[1]) })).reduce((a, b) => (b.n < a.n ? b : a)).c;
  cv.fillRect(lx, ly, lw, lh, [255, 255, 255]);
  cv.line(lx, ly, lx + lw, ly, GREY);
  cv.line(lx, ly + lh, lx + lw, ly + lh, GREY);
  cv.line(lx, ly, lx, ly + lh, GREY);
  cv.line(lx + lw, ly, lx + lw, ly + lh, GREY);
  spec.series.forEach((s, k) => {
    const color = s.color ?? PALETTE[k % PALETTE.length]!;
    const y = ly + 8 + k * rowH + (GLYPH_HEIGHT * S) / 2;
    cv.line(lx + 8, y, lx + 36, y, color, 3);
    cv.fillRect(lx + 18, y - 4, 9, 9, color);
    cv.text(lx + 42, y - (GLYPH_HEIGHT * S) / 2, s.name, BLACK, S);
  });
  return cv;
}
