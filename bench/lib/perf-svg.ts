/**
 * A small dependency-free SVG chart for the benchmark: one panel per metric, one horizontal bar
 * per target, values printed at the bar ends. Written by hand so the README can embed it.
 */

/** One panel: a title and a value per target. */
export interface Panel {
  readonly title: string;
  /** formats a value for the label at the bar's end */
  readonly format: (v: number) => string;
  readonly values: readonly { readonly label: string; readonly value: number }[];
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Renders panels side by side (two per row). */
export function renderChart(title: string, subtitle: string, panels: readonly Panel[]): string {
  const panelW = 460;
  const barH = 18;
  const gap = 6;
  const labelW = 110;
  const cols = 2;
  const rowsPerPanel = Math.max(...panels.map((p) => p.values.length), 1);
  const panelH = 40 + rowsPerPanel * (barH + gap);
  const rows = Math.ceil(panels.length / cols);
  const width = cols * panelW + 20;
  const height = 60 + rows * (panelH + 10);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="10" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`);
  out.push(`<text x="10" y="42" fill="#555">${esc(subtitle)}</text>`);
  panels.forEach((p, i) => {
    const x0 = 10 + (i % cols) * panelW;
    const y0 = 60 + Math.floor(i / cols) * (panelH + 10);
    out.push(`<text x="${x0}" y="${y0 + 14}" font-weight="bold">${esc(p.title)}</text>`);
    const max = Math.max(...p.values.map((v) => v.value), 1e-9);
    const barMax = panelW - labelW - 90;
    p.values.forEach((v, j) => {
      const y = y0 + 26 + j * (barH + gap);
      const w = Math.max(1, (v.value / max) * barMax);
      const fill = v.label.startsWith('drover') ? '#d9480f' : '#4263eb';
      out.push(`<text x="${x0 + labelW - 6}" y="${y + 13}" text-anchor="end">${esc(v.label)}</text>`);
      out.push(`<rect x="${x0 + labelW}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${fill}"/>`);
      out.push(`<text x="${(x0 + labelW + w + 4).toFixed(1)}" y="${y + 13}">${esc(p.format(v.value))}</text>`);
    });
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
