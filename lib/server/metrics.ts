// metrics.ts — GET /metrics in Prometheus text format (prom-client, a registry of our own):
// requests by endpoint and status, prompt / cached / generated tokens, forwards (NFE), the
// queue, and latency histograms (whole request, queue wait, time to the first block), plus the
// process metrics prom-client collects. What an autoscaler reads: diffusionvl_queue_depth and
// diffusionvl_requests_in_flight, or the rate of diffusionvl_request_duration_seconds.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GenerateResult } from '../model/model.js';

const LATENCY = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'endpoint' | 'status'>;
  readonly promptTokens: Counter;
  readonly cachedTokens: Counter;
  readonly completionTokens: Counter;
  readonly forwards: Counter;
  readonly prefixLookups: Counter<'result'>;
  readonly cancelled: Counter;
  readonly queueDepth: Gauge;
  readonly inFlight: Gauge;
  readonly modelLoaded: Gauge;
  readonly requestSeconds: Histogram<'stream'>;
  readonly queueSeconds: Histogram;
  readonly firstBlockSeconds: Histogram;
  readonly tokensPerForward: Histogram;

  constructor(sample: { queueDepth: () => number; inFlight: () => number; loaded: () => boolean }) {
    const registers = [this.registry];
    this.requests = new Counter({ name: 'diffusionvl_requests_total', help: 'HTTP requests by endpoint and status code', labelNames: ['endpoint', 'status'], registers });
    this.promptTokens = new Counter({ name: 'diffusionvl_prompt_tokens_total', help: 'Prompt positions of completed generations (image rows included)', registers });
    this.cachedTokens = new Counter({ name: 'diffusionvl_cached_prompt_tokens_total', help: 'Prompt positions reused from the prefix cache', registers });
    this.completionTokens = new Counter({ name: 'diffusionvl_completion_tokens_total', help: 'Tokens generated', registers });
    this.forwards = new Counter({ name: 'diffusionvl_forwards_total', help: 'Model forward passes (NFE: prefill, denoising, commit)', registers });
    this.prefixLookups = new Counter({ name: 'diffusionvl_prefix_cache_lookups_total', help: 'Prefix-cache lookups by result (hit: some prompt positions reused)', labelNames: ['result'], registers });
    this.cancelled = new Counter({ name: 'diffusionvl_cancelled_requests_total', help: 'Generations aborted because the client disconnected', registers });
    this.queueDepth = new Gauge({ name: 'diffusionvl_queue_depth', help: 'Requests waiting for the model', registers, collect() { this.set(sample.queueDepth()); } });
    this.inFlight = new Gauge({ name: 'diffusionvl_requests_in_flight', help: 'Requests generating now', registers, collect() { this.set(sample.inFlight()); } });
    this.modelLoaded = new Gauge({ name: 'diffusionvl_model_loaded', help: '1 once the model is loaded and requests are served', registers, collect() { this.set(sample.loaded() ? 1 : 0); } });
    this.requestSeconds = new Histogram({ name: 'diffusionvl_request_duration_seconds', help: 'Chat completion time, queue included', labelNames: ['stream'], buckets: LATENCY, registers });
    this.queueSeconds = new Histogram({ name: 'diffusionvl_queue_wait_seconds', help: 'Time waiting for the model', buckets: LATENCY, registers });
    this.firstBlockSeconds = new Histogram({ name: 'diffusionvl_time_to_first_block_seconds', help: 'From the request to its first committed block', buckets: LATENCY, registers });
    this.tokensPerForward = new Histogram({ name: 'diffusionvl_tokens_per_forward', help: 'Generated tokens per forward, per request', buckets: [0.125, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 8], registers });
    collectDefaultMetrics({ register: this.registry, prefix: 'diffusionvl_' });
  }

  /** Counts a finished generation. */
  observeResult(r: GenerateResult): void {
    this.promptTokens.inc(r.stats.promptTokens);
    this.cachedTokens.inc(r.stats.cachedTokens);
    this.completionTokens.inc(r.ids.length);
    this.forwards.inc(r.stats.forwards);
    if (r.stats.forwards > 0) this.tokensPerForward.observe(r.stats.tokensPerForward);
  }
}
