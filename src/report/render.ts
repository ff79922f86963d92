// Vega-Lite spec -> SVG (vega's headless SVG renderer, no browser) -> PNG (resvg).
// vega and vega-lite are ES modules: loaded with import() from this CommonJS build.

type VegaModule = typeof import('vega');
type VegaLiteModule = typeof import('vega-lite');

let mods: Promise<{ vega: VegaModule; vl: VegaLiteModule }> | undefined;
function load() {
  mods ??= (async () => ({ vega: await import('vega'), vl: await import('vega-lite') }))();
  return mods;
}

/** Renders a Vega-Lite spec to an SVG string; throws on a spec error or a Vega warning-level failure. */
export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  const { vega, vl } = await load();
  const compiled = vl.compile(spec as never).spec;
  const errors: string[] = [];
  const logger = vega.logger(vega.Warn);
  logger.error = ((...a: unknown[]) => { errors.push(a.map(String).join(' ')); return logger; }) as typeof logger.error;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none', logger });
  const svg = await view.toSVG();
  view.finalize();
  if (errors.length) throw new Error(`vega: ${errors.join('; ')}`);
  return svg;
}

/** Rasterises an SVG at `scale` (2 = twice its CSS size) with the system fonts. */
export function svgToPng(svg: string, scale = 2): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Resvg } = require('@resvg/resvg-js') as typeof import('@resvg/resvg-js');
  const r = new Resvg(svg, { fitTo: { mode: 'zoom', value: scale }, background: 'white', font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } });
  return r.render().asPng();
}
