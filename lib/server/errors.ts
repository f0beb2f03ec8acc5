// errors.ts — errors of the HTTP API in OpenAI's JSON shape:
//   { "error": { "message": "...", "type": "invalid_request_error", "param": "max_tokens", "code": null } }
// ApiError carries the HTTP status; toApiError maps the library's typed errors (an OptionError
// names its option, translated back to the request field the client sent).
import { DiffusionVLError, DisposedError, ImageError, OptionError } from '../errors.js';

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

export class ApiError extends Error {
  readonly status: number;
  readonly type: ApiErrorType;
  readonly param: string | null;
  readonly code: string | null;
  constructor(status: number, message: string, opts: { type?: ApiErrorType; param?: string | null; code?: string | null } = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.type = opts.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
    this.param = opts.param ?? null;
    this.code = opts.code ?? null;
  }

  /** The JSON body. */
  get body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** 400 naming the request field. */
export function badRequest(param: string, message: string, code: string | null = null): ApiError {
  return new ApiError(400, message, { param, code });
}

/** Library option names → the request fields that set them (lib/server/request.ts). */
const FIELD_OF: Record<string, string> = {
  maxTokens: 'max_tokens', blockSize: 'block_size', topP: 'top_p', topK: 'top_k', stopTokens: 'stop',
  remasking: 'remasking', threshold: 'threshold', steps: 'steps', temperature: 'temperature', seed: 'seed',
  stop: 'stop', mode: 'mode', messages: 'messages', format: 'messages', images: 'messages', prompt: 'messages',
};

/** Any error from handling a request → an ApiError (unknown ones become a 500 that says what failed). */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof OptionError) return badRequest(FIELD_OF[e.option ?? ''] ?? e.option ?? 'messages', e.message);
  if (e instanceof ImageError) return badRequest('messages', e.message, 'invalid_image');
  if (e instanceof DisposedError) return new ApiError(503, 'the server is shutting down', { code: 'shutting_down' });
  if (e instanceof DiffusionVLError) return new ApiError(500, `${e.name} (${e.code}): ${e.message}`, { code: e.code });
  return new ApiError(500, `internal error: ${(e as Error)?.message ?? String(e)}`);
}
