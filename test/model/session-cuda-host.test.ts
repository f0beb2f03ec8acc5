// Chat sessions through the engine's CUDA execution path without a GPU: the host-memory test
// backend of cuda-queue-host.test.ts (test/helpers/host-backend.cpp), so the KV copies out and
// back run as device-queue ops. Kernels are the CPU's there, so every turn must equal its cold
// generate() exactly. (On a real GPU the same check would have to allow near-ties: small-M and
// large-M matmuls sum in different orders.)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findCompiler } from '../helpers/compiler.js';
import { buildHostBackend, runOnHostBackend } from '../helpers/host-backend.js';

const cxx = findCompiler();
const work = mkdtempSync(join(tmpdir(), 'dvl-session-host-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe.skipIf(!cxx)(`sessions on the host-memory CUDA test backend${cxx ? '' : ' (skipped: no C++ compiler on PATH)'}`, () => {
  it('two interleaved sessions: K/V copied out and back on the device queue, every turn equals a cold run', () => {
    const r = runOnHostBackend(buildHostBackend(cxx!, work), 'cuda-session-check.ts', 200_000);
    expect(r.status, r.stderr).toBe(0);
    const rep = JSON.parse(r.stdout) as { backend: string; turns: { session: number; same: boolean; cached: number; prefilled: number }[] };
    expect(rep.backend).toBe('cuda');
    expect(rep.turns.map((t) => t.same)).toEqual([true, true, true, true, true]);
    // Later turns of each session reused K/V that another session's turn had pushed out.
    expect(rep.turns[2].cached).toBeGreaterThan(0);
    expect(rep.turns[3].cached).toBeGreaterThan(0);
    expect(rep.turns[4].cached).toBeGreaterThan(rep.turns[2].cached);
  }, 240_000);
});
