# The second build path (node-gyp): the same CPU addon as CMakeLists.txt. The per-ISA kernel
# files are separate static libraries because gyp cannot give single files their own flags.
# The CUDA plugin is CMake-only (npm run build:native:cuda).
{
  "target_defaults": {
    "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wno-unused-parameter"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED", "NAPI_CPP_EXCEPTIONS", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
    "conditions": [["target_arch=='x64'", {"defines": ["DVL_HAVE_X86_KERNELS=1"]}]]
  },
  "targets": [
    {
      "target_name": "dvl_avx2",
      "type": "static_library",
      "conditions": [["target_arch=='x64'", {
        "sources": ["<!@(node -p \"require('fs').readdirSync('csrc/cpu').filter(f=>f.endsWith('_avx2.cpp')).map(f=>'csrc/cpu/'+f).concat(require('fs').readdirSync('csrc/cpu/ops').filter(f=>f.endsWith('_avx2.cpp')).map(f=>'csrc/cpu/ops/'+f)).join(' ')\")"],
        "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
      }]]
    },
    {
      "target_name": "dvl_avx2_vnni",
      "type": "static_library",
      "conditions": [["target_arch=='x64'", {
        "sources": ["<!@(node -p \"require('fs').readdirSync('csrc/cpu').filter(f=>f.endsWith('_avx2_vnni.cpp')).map(f=>'csrc/cpu/'+f).concat(require('fs').readdirSync('csrc/cpu/ops').filter(f=>f.endsWith('_avx2_vnni.cpp')).map(f=>'csrc/cpu/ops/'+f)).join(' ')\")"],
        "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavxvnni"]
      }]]
    },
    {
      "target_name": "dvl_avx512",
      "type": "static_library",
      "conditions": [["target_arch=='x64'", {
        "sources": ["<!@(node -p \"require('fs').readdirSync('csrc/cpu').filter(f=>f.endsWith('_avx512.cpp')).map(f=>'csrc/cpu/'+f).concat(require('fs').readdirSync('csrc/cpu/ops').filter(f=>f.endsWith('_avx512.cpp')).map(f=>'csrc/cpu/ops/'+f)).join(' ')\")"],
        "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl"]
      }]]
    },
    {
      "target_name": "dvl_avx512_bf16",
      "type": "static_library",
      "conditions": [["target_arch=='x64'", {
        "sources": ["<!@(node -p \"require('fs').readdirSync('csrc/cpu').filter(f=>f.endsWith('_avx512_bf16.cpp')).map(f=>'csrc/cpu/'+f).concat(require('fs').readdirSync('csrc/cpu/ops').filter(f=>f.endsWith('_avx512_bf16.cpp')).map(f=>'csrc/cpu/ops/'+f)).join(' ')\")"],
        "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-mavx512vnni"]
      }]]
    },
    {
      "target_name": "diffusionvl",
      "dependencies": ["dvl_avx2", "dvl_avx2_vnni", "dvl_avx512", "dvl_avx512_bf16"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "sources": ["<!@(node -p \"const fs=require('fs');const pick=(d)=>fs.readdirSync(d).filter(f=>f.endsWith('.cpp')&&!/_(avx2|avx2_vnni|avx512|avx512_bf16)\\.cpp$/.test(f)).map(f=>d+'/'+f);[...pick('csrc/core'),...pick('csrc/cuda/host'),...pick('csrc/cpu'),...pick('csrc/cpu/ops'),...pick('csrc/napi')].join(' ')\")"],
      "cflags_cc": ["-fvisibility=hidden"],
      "ldflags": ["-Wl,-z,now"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
