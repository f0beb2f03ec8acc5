// compiler.ts — the system C++ compiler, for tests that build small native helpers (fake
// backend plugins). undefined when there is none; those tests skip and say so.
import { execFileSync } from 'node:child_process';

export function findCompiler(): string | undefined {
  for (const c of [process.env.CXX, 'c++', 'g++', 'clang++']) {
    if (!c) continue;
    try {
      execFileSync(c, ['--version'], { stdio: 'ignore' });
      return c;
    } catch {
      /* try the next */
    }
  }
  return undefined;
}
