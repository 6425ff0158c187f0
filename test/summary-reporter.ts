/**
 * Prints one plain closing line, `N passed, N failed, N skipped`, after vitest's own summary, so
 * tools that read a run's last line (CI dashboards, log scrapers) get the counts without parsing
 * vitest's coloured table. A test file that failed outside its tests (it did not load, or a
 * hook threw) is counted too: `N passed, 0 failed` must never hide a broken file.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    let brokenFiles = 0;
    for (const mod of testModules) {
      let failedHere = 0;
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failedHere++;
        else skipped++;
      }
      failed += failedHere;
      if (mod.state() === 'failed' && failedHere === 0) brokenFiles++;
    }
    const broken = brokenFiles === 0 ? '' : `, ${brokenFiles} file${brokenFiles === 1 ? '' : 's'} failed to run`;
    process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped${broken}\n`);
  }
}
