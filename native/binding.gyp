{
  "targets": [
    {
      "target_name": "ktrail_native",
      "sources": ["src/addon.cc", "src/capture.cc", "src/load.cc", "src/common.cc", "src/maps.cc", "src/libbpf_log.cc", "src/features.cc", "src/batch_pool.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "<!@(pkg-config --cflags libbpf)"],
      "libraries": ["<!@(pkg-config --libs libbpf)", "-lelf", "-lz"]
    },
    {
      "target_name": "ktrail_codec",
      "sources": ["src/codec.cc", "src/memory.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "<!@(pkg-config --cflags libzstd)"],
      "libraries": ["<!@(pkg-config --libs libzstd)"]
    },
    {
      "target_name": "fixtures",
      "type": "none",
      "actions": [
        {
          "action_name": "bpf_fixtures",
          "inputs": ["test/fixture.bpf.c", "test/broken.bpf.c", "test/getpid_storm.c", "test/burst_storm.c", "test/cgroup_churn.c", "Makefile"],
          "outputs": ["<(PRODUCT_DIR)/fixtures/fixture.bpf.o", "<(PRODUCT_DIR)/fixtures/broken.bpf.o", "<(PRODUCT_DIR)/fixtures/getpid_storm", "<(PRODUCT_DIR)/fixtures/burst_storm", "<(PRODUCT_DIR)/fixtures/cgroup_churn"],
          "action": ["make", "-s", "-C", "<(module_root_dir)", "OUT=<(PRODUCT_DIR)/fixtures", "fixtures"]
        }
      ]
    }
  ]
}
