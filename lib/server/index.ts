// index.ts — `diffusionvl/server`: the OpenAI-compatible server as a library (what
// `diffusionvl serve` runs), kept out of the main entry so `import 'diffusionvl'` never loads
// the HTTP stack.
//
//   import { startServer } from 'diffusionvl/server';
//   const { server, url } = await startServer({ model: './my-model', port: 8080 });
//   await server.ready;              // the model is loaded; /health is 200
//   process.on('SIGTERM', () => server.shutdown());
export { DiffusionVLServer, startServer } from './app.js';
export type { ServeOptions, ServerState } from './app.js';
export type { ImagePolicy } from './images.js';
export { ApiError } from './errors.js';
