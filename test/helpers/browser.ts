/**
 * Debian's chromium driven by playwright-core, for the dashboard tests. `browserTests` is false
 * when chromium is absent (the tests skip, with a notice), except under CI=true, where a missing
 * browser must fail the run instead of silently passing.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const haveChromium = existsSync(CHROMIUM);
/** run the browser tests: chromium is there, or CI=true (where its absence fails them) */
export const browserTests = haveChromium || process.env['CI'] === 'true';

/** Where screenshots go (test/artifacts/, gitignored). */
export const ARTIFACTS = new URL('../artifacts/', import.meta.url).pathname;

/** Warns once per file that the browser tests are skipped. */
export function noteSkipped(file: string): void {
  if (!browserTests) console.warn(`${file}: ${CHROMIUM} not found, browser tests skipped (apt-get install -y chromium)`);
}

/**
 * Starts chromium headless; fails (under CI=true) when it is missing.
 * @param extraArgs more command-line switches (certificate trust, host mapping)
 */
export async function launch(extraArgs: readonly string[] = []): Promise<Browser> {
  if (!haveChromium) throw new Error(`${CHROMIUM} is required under CI=true`);
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', ...extraArgs],
  });
}

/** Collects console errors and page errors (a CSP violation shows up here). */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  return errors;
}
