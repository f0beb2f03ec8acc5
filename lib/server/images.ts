// images.ts — the bytes behind a request's image_url: data: URLs always (the body cap bounds
// them), file: URLs only under --image-root, http(s) URLs only with --allow-http-images; both
// with a byte cap and (http) a time cap. Every refusal is a 400 naming the field.
import { realpath, stat } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { badRequest } from './errors.js';

export interface ImagePolicy {
  /** Directory file: URLs may read under (resolved, symlinks followed); null: file: refused. */
  fileRoot: string | null;
  /** Fetch http(s) URLs. */
  allowHttp: boolean;
  /** Largest image read from a file or fetched, in bytes. */
  maxBytes: number;
  /** Time limit of one fetch, in ms. */
  timeoutMs: number;
}

/** Resolves one image URL to what Model accepts: the data: URL as is, a checked path, or fetched bytes. */
export async function resolveImageUrl(url: string, param: string, policy: ImagePolicy, signal?: AbortSignal): Promise<string | Uint8Array> {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'data') return url;
  if (scheme === 'file') {
    if (!policy.fileRoot) throw badRequest(param, 'file: image URLs are disabled (start the server with --image-root DIR to allow files under DIR)', 'image_url_not_allowed');
    return readUnder(url, param, policy);
  }
  if (scheme === 'http' || scheme === 'https') {
    if (!policy.allowHttp) throw badRequest(param, 'http(s) image URLs are disabled (start the server with --allow-http-images)', 'image_url_not_allowed');
    return fetchCapped(url, param, policy, signal);
  }
  throw badRequest(param, `unsupported image URL scheme ${scheme ? `'${scheme}:'` : '(none)'}: use a data: URL${policy.fileRoot ? ', file:' : ''}${policy.allowHttp ? ', http(s):' : ''}`, 'invalid_image_url');
}

/**
 * A file: URL → its path, once it is known to be a regular file under the root within the cap;
 * the model reads it (and checks it again against its own limits) like any image path.
 */
async function readUnder(url: string, param: string, policy: ImagePolicy): Promise<string> {
  let path: string;
  try {
    path = fileURLToPath(url);
  } catch (e) {
    throw badRequest(param, `bad file: URL (${(e as Error).message})`, 'invalid_image_url');
  }
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    throw badRequest(param, `image file not found: ${path}`, 'invalid_image_url');
  }
  const rel = relative(policy.fileRoot!, real);
  if (rel === '' || rel.startsWith('..' + sep) || rel === '..' || isAbsolute(rel)) {
    throw badRequest(param, `image file ${path} is outside the allowed --image-root`, 'image_url_not_allowed');
  }
  const st = await stat(real);
  if (!st.isFile()) throw badRequest(param, `${path} is not a regular file`, 'invalid_image_url');
  if (st.size > policy.maxBytes) throw badRequest(param, `image file is ${st.size} bytes, over the ${policy.maxBytes}-byte cap (--image-max-mb)`, 'image_too_large');
  return real;
}

async function fetchCapped(url: string, param: string, policy: ImagePolicy, signal?: AbortSignal): Promise<Uint8Array> {
  const timeout = AbortSignal.timeout(policy.timeoutMs);
  const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
  let res: Response;
  try {
    res = await fetch(url, { signal: both, redirect: 'follow' });
  } catch (e) {
    if (timeout.aborted) throw badRequest(param, `fetching the image took longer than ${policy.timeoutMs} ms (--image-timeout-ms)`, 'image_fetch_timeout');
    if (signal?.aborted) throw signal.reason;
    throw badRequest(param, `cannot fetch the image: ${(e as Error).message}`, 'image_fetch_failed');
  }
  if (!res.ok) throw badRequest(param, `fetching the image returned HTTP ${res.status}`, 'image_fetch_failed');
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > policy.maxBytes) {
    await res.body?.cancel();
    throw badRequest(param, `the image is ${declared} bytes, over the ${policy.maxBytes}-byte cap (--image-max-mb)`, 'image_too_large');
  }
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    for await (const c of res.body as unknown as AsyncIterable<Uint8Array>) {
      n += c.length;
      if (n > policy.maxBytes) throw badRequest(param, `the image is over the ${policy.maxBytes}-byte cap (--image-max-mb)`, 'image_too_large');
      chunks.push(c);
    }
  } catch (e) {
    if (timeout.aborted) throw badRequest(param, `fetching the image took longer than ${policy.timeoutMs} ms (--image-timeout-ms)`, 'image_fetch_timeout');
    throw e;
  }
  return Buffer.concat(chunks);
}
