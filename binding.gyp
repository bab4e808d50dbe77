{
  # The native OpenSSL engine (src/engines/openssl.ts). It links no libssl:
  # OpenSSL's symbols resolve against the node binary that loads the addon,
  # and the headers are the ones node ships under <nodedir>/include/node/openssl.
  "variables": {
    "atls_sanitize%": "0"
  },
  "targets": [
    {
      "target_name": "atls_openssl",
      "sources": ["native/atls_openssl.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "OPENSSL_API_COMPAT=30000"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-cast-function-type"],
      "conditions": [
        ["atls_sanitize==1", {
          "cflags_cc": ["-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1"],
          "ldflags": ["-fsanitize=address"]
        }]
      ]
    }
  ]
}
