// The playground (GET /) in a real headless browser: Debian's chromium (installed by .ci/run
// through scripts/install-chromium.sh) driven by playwright-core. Upload
// examples/three-shapes.png, ask, and see the streamed answer (the library's answer, exactly),
// the denoising canvas filled in (masks seen while streaming, none left at the end), the stats
// line, and a confidence tooltip. The screenshot is kept as test-artifacts/playground.png.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../lib/index.js';
import { packageRoot } from '../../lib/native/index.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';

const CHROMIUM = '/usr/bin/chromium';
const THREE = fileURLToPath(new URL('../../examples/three-shapes.png', import.meta.url));
const ARTIFACTS = join(packageRoot(), 'test-artifacts');
// CI installs chromium first and sets this, so a missing browser fails there instead of skipping.
const required = process.env.DIFFUSIONVL_REQUIRE_BROWSER === '1';
const present = existsSync(CHROMIUM);
if (!present && !required) {
  console.warn(`playground.test.ts: skipped: ${CHROMIUM} is missing (install it as root with: bash scripts/install-chromium.sh)`);
}

describe.skipIf(!present && !required)('playground in headless chromium', () => {
  let srv: ServeProcess, ctx: BrowserContext, profile: string;
  beforeAll(async () => {
    if (!present) throw new Error(`${CHROMIUM} is missing: .ci/run installs it with scripts/install-chromium.sh (as root)`);
    profile = mkdtempSync(join(tmpdir(), 'dvl-chromium-'));
    srv = await startServe(['--threads', '1']);
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 800 },
      args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
  }, 180_000);
  afterAll(async () => {
    await ctx?.close();
    await srv?.stop();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  it('upload an image, ask, watch the block fill in, read the answer and the stats', async () => {
    const page = ctx.pages()[0] ?? await ctx.newPage();   // the persistent context's own tab
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(srv.url + '/');
    await page.waitForSelector('body[data-ready="1"]', { timeout: 30_000 });
    await expect(page.locator('#model').textContent()).resolves.toContain('shapes-diffusionvl');

    await page.setInputFiles('#file', THREE);
    await page.waitForSelector('#preview img');
    await page.fill('#input', 'Describe the image.');
    // Static remasking over the model's 8 steps: each block shows its masks for several steps
    // (with the child's default, dynamic 0.85, this model fills a block in one step).
    await page.click('details summary');   // the Settings panel, as a user opens it
    await page.selectOption('#remasking', 'static');
    await page.click('#send');
    const answer = page.locator('.msg.assistant[data-done="1"]');
    await answer.waitFor({ timeout: 60_000 });
    const text = (await answer.textContent()) ?? '';

    // The page's answer is the library's (temperature 0, the page's default 128 tokens, static).
    await using model = await loadModel('shapes-diffusionvl', { threads: 1 });
    const ref = await model.generate({ messages: [{ role: 'user', content: [{ type: 'image', image: readFileSync(THREE) }, { type: 'text', text: 'Describe the image.' }] }], maxTokens: 128, remasking: 'static' });
    expect(text).toBe(ref.text);
    await expect(page.locator('.msg.user img').count()).resolves.toBe(1);

    // The canvas: one row per decoded block, no mask left, masks seen while it streamed.
    const canvas = await page.$eval('#canvas', (c) => ({ ...(c as HTMLCanvasElement).dataset }));
    expect(Number(canvas.blocks)).toBe(ref.stats.blockIterations.length);
    expect(Number(canvas.masked)).toBe(0);
    expect(Number(canvas.cells)).toBe(8 * Number(canvas.blocks));
    expect(await page.evaluate(() => (window as unknown as { __playground: { maskedSeen: number } }).__playground.maskedSeen)).toBeGreaterThan(0);
    const coloured = await page.$eval('#canvas', (c) => {
      const cv = c as HTMLCanvasElement;
      const d = cv.getContext('2d')!.getImageData(0, 0, cv.width, cv.height).data;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (!(d[i] > 240 && d[i + 1] > 240 && d[i + 2] > 240)) n++;
      return n / (d.length / 4);
    });
    expect(coloured).toBeGreaterThan(0.3);

    // The stats line, and a revealed cell's tooltip with its confidence.
    const stats = (await page.textContent('#stats')) ?? '';
    expect(stats).toContain(`NFE ${ref.stats.forwards}`);
    expect(stats).toMatch(/tokens\/forward/);
    expect(stats).toMatch(/tok\/s/);
    const box = (await page.locator('#canvas').boundingBox())!;
    // Block row 1 (the second decoded block: all generated), first cell: label 54 px, cell 84 + gap 4, row 34 + gap 4.
    await page.mouse.move(box.x + 54 + 20, box.y + 4 + 38 + 15);
    await expect(page.textContent('#tip')).resolves.toMatch(/revealed at step \d+, confidence 0\.\d{3}|confidence 1\.000/);

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'playground.png'), fullPage: true });
    expect(existsSync(join(ARTIFACTS, 'playground.png'))).toBe(true);
    expect(errors).toEqual([]);
  }, 120_000);
});
