// cuda_queue.cpp — a CUDA queue's op execution (see cuda_queue.h for the rules).
#include "cuda_queue.h"

#include <cstdlib>
#include <future>
#include <mutex>

#include "../../cpu/ops/ops.h"
#include "cuda_loader.h"
#include "../../core/error.h"

namespace dvl {

namespace {

const dvl_backend_api& api_or_throw() {
  const dvl_backend_api* api = cuda_api();
  if (!api) throw Error(DVL_ERR_BACKEND, "the CUDA backend is not available (call getBackendInfo for the reason)");
  return *api;
}

[[noreturn]] void throw_err(const dvl_backend_error& e, const std::string& what) {
  std::string code = e.code;
  if (code.rfind("DVL_", 0) != 0) code = DVL_ERR_BACKEND;
  throw Error(code.c_str(), what + ": " + e.message);
}

bool on_device(const TensorP& t) { return t && t->on_cuda(); }

void h2d(const dvl_backend_api& api, void* dst, const void* src, size_t bytes, const std::string& what) {
  dvl_backend_error err{};
  if (bytes && api.copy_h2d(cuda_probe_device(), dst, src, bytes, &err) != 0) throw_err(err, what);
}

void d2h(const dvl_backend_api& api, void* dst, const void* src, size_t bytes, const std::string& what) {
  dvl_backend_error err{};
  if (bytes && api.copy_d2h(cuda_probe_device(), dst, src, bytes, &err) != 0) throw_err(err, what);
}

// Host memory for staging uploads: pinned through the plugin when it can, else the heap.
class Staging {
 public:
  Staging(const dvl_backend_api& api, size_t bytes) : api_(api) {
    dvl_backend_error err{};
    if (api.host_alloc && api.host_alloc(bytes, &p_, &err) == 0) {
      pinned_ = true;
    } else {
      p_ = std::malloc(bytes ? bytes : 1);
      if (!p_) throw Error(DVL_ERR_ALLOC, "out of host memory for a " + std::to_string(bytes) + "-byte staging buffer");
    }
  }
  ~Staging() {
    if (pinned_) api_.host_free(p_);
    else std::free(p_);
  }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  char* data() const { return static_cast<char*>(p_); }

 private:
  const dvl_backend_api& api_;
  void* p_ = nullptr;
  bool pinned_ = false;
};

// 16 MiB: large enough that the per-copy overhead vanishes, small enough to pin without fuss.
constexpr size_t kStagingBytes = size_t(16) << 20;

// Two staging buffers shared by every load of the process (pinning is a slow driver call: once,
// not once per tensor), used in turn so the next chunk is read from the file while the previous
// one is copied to the device. Loads of several queues take turns on the mutex.
struct StagingPair {
  std::mutex mu;
  std::unique_ptr<Staging> buf[2];
};
StagingPair& staging_pair() {
  static StagingPair* p = new StagingPair;  // never destroyed: a static destructor must not call into an unloaded plugin
  return *p;
}

// load: file bytes → device tensor, through the staging buffers; a dtype change is converted
// on the device (the plugin's convert) from a temporary of the file's dtype. (A backend
// without that convert gets the CPU load's conversion, then one upload: cuda_queue_op.)
void load_to_device(Tensor& dst, const LoadAttrs& a) {
  const dvl_backend_api& api = api_or_throw();
  const std::string& path = a.path;
  const DType src = a.src;
  const long offset = long(a.offset);
  const size_t bytes = size_t(a.bytes);
  TensorP tmp;
  void* target = dst.raw();
  if (src != dst.dtype) {
    tmp = cuda_tensor(src, dst.shape);
    target = tmp->raw();
  }
  InputFile file(path);
  StagingPair& sp = staging_pair();
  std::lock_guard<std::mutex> lk(sp.mu);
  for (auto& b : sp.buf)
    if (!b) b = std::make_unique<Staging>(api, kStagingBytes);
  auto chunk = [&](size_t done) { return bytes - done < kStagingBytes ? bytes - done : kStagingBytes; };
  std::future<void> reading;
  if (bytes) reading = std::async(std::launch::async, [&] { file.read_exact(sp.buf[0]->data(), chunk(0), offset); });
  for (size_t done = 0, i = 0; done < bytes; done += chunk(done), ++i) {
    reading.get();  // chunk i is in buf[i % 2]
    const size_t n = chunk(done), next = done + n;
    if (next < bytes)
      reading = std::async(std::launch::async, [&, next, i] { file.read_exact(sp.buf[(i + 1) % 2]->data(), chunk(next), offset + long(next)); });
    try {
      h2d(api, static_cast<char*>(target) + done, sp.buf[i % 2]->data(), n, "load: upload of " + path);
    } catch (...) {
      if (reading.valid()) reading.wait();  // never leave a read running into a buffer we give up
      throw;
    }
  }
  if (tmp) {
    OpAttrs conv;
    conv.str["dtype"] = dtype_name(dst.dtype);
    conv.convert_to = dst.dtype;
    TensorP view = std::make_shared<Tensor>(dst);  // same storage; cuda_run takes TensorPs
    cuda_run(OpId::Convert, {tmp}, {view}, conv);
  }
}

TensorP download(const Tensor& dev) {
  TensorP h = Tensor::alloc(dev.dtype, dev.shape, Device::Cpu);
  d2h(api_or_throw(), h->raw(), dev.raw(), dev.nbytes(), "copy of " + dev.describe() + " to the host");
  return h;
}

}  // namespace

void check_host_inputs(const std::string& op, const std::vector<TensorP>& in) {
  for (size_t i = 0; i < in.size(); ++i)
    if (on_device(in[i]))
      throw Error(DVL_ERR_ARG, op + ": input " + std::to_string(i) + " (" + in[i]->describe() +
                                   ") is on the GPU, but this queue runs on the CPU; create the queue with device 'cuda'");
}

ExecQueue::Job cuda_queue_op(const OpDef& def, std::shared_ptr<std::vector<TensorP>> in,
                             std::shared_ptr<std::vector<TensorP>>& out, std::shared_ptr<OpAttrs> attrs) {
  const OpId id = def.id;
  const std::string name = def.name();
  {
    DeviceAllocScope scope(Device::Cuda);
    out = std::make_shared<std::vector<TensorP>>(def.plan(*in, *attrs));
  }
  if (op_is_view_or_alloc(id)) return nullptr;
  if (id == OpId::Load) {
    TensorP dst = (*in)[0];
    if (!on_device(dst)) {  // a host tensor: the CPU op does it
      auto run = def.run;
      return [run, in, out, attrs](OpContext& ctx) { run(ctx, *in, *out, *attrs); };
    }
    const DType src = attrs->load.src;
    if (src != dst->dtype && !cuda_supports(OpId::Convert, src)) {  // convert on the CPU, then upload
      auto run = def.run;
      return [run, dst, attrs](OpContext& ctx) {
        TensorP host = Tensor::alloc(dst->dtype, dst->shape, Device::Cpu);
        run(ctx, {host}, {}, *attrs);
        h2d(api_or_throw(), dst->raw(), host->raw(), host->nbytes(), "load: upload of " + attrs->load.path);
      };
    }
    return [dst, attrs](OpContext&) { load_to_device(*dst, attrs->load); };
  }
  // Ops that write into input 0 change it where it lives: it must be the device copy.
  if (out->empty() && !in->empty() && !on_device((*in)[0]))
    throw Error(DVL_ERR_ARG, name + ": input 0 (" + ((*in)[0] ? (*in)[0]->describe() : std::string("null")) +
                                 ") is written in place and must be a GPU tensor on a CUDA queue");
  DType main = in->empty() || !(*in)[0] ? DType::F32 : (*in)[0]->dtype;
  // attention_batch over picked rows (input 3) is a CPU-queue form the plugin does not take:
  // the model does not send it to a CUDA queue; if something does, the CPU op runs it below.
  const bool picked_rows = id == OpId::AttentionBatch && in->size() > 3 && (*in)[3];
  if (cuda_supports(id, main) && !picked_rows) {
    return [id, in, out, attrs](OpContext&) {
      std::vector<TensorP> dev_in(*in);
      for (TensorP& t : dev_in)
        if (t && !on_device(t)) t = cuda_upload(*t);  // a small host tensor (ids, positions, tables)
      cuda_run(id, dev_in, *out, *attrs);
    };
  }
  // Not on the GPU: run the CPU op on host copies.
  auto run = def.run;
  return [run, in, out, attrs](OpContext& ctx) {
    const dvl_backend_api& api = api_or_throw();
    std::vector<TensorP> host_in(*in), host_out;
    for (TensorP& t : host_in)
      if (on_device(t)) t = download(*t);
    for (const TensorP& t : *out) host_out.push_back(Tensor::alloc(t->dtype, t->shape, Device::Cpu));
    run(ctx, host_in, host_out, *attrs);
    for (size_t i = 0; i < out->size(); ++i)
      h2d(api, (*out)[i]->raw(), host_out[i]->raw(), host_out[i]->nbytes(), "upload of a CPU op's output");
    if (out->empty() && !in->empty() && on_device((*in)[0]))
      h2d(api, (*in)[0]->raw(), host_in[0]->raw(), host_in[0]->nbytes(), "upload of a CPU op's in-place result");
  };
}

void cuda_read_into(const Tensor& dev, void* host) {
  d2h(api_or_throw(), host, dev.raw(), dev.nbytes(), "read of " + dev.describe());
}

void cuda_write_from(Tensor& dev, const void* host, size_t bytes) {
  h2d(api_or_throw(), dev.raw(), host, bytes, "write into " + dev.describe());
}

}  // namespace dvl
