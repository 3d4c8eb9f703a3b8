{
  "targets": [
    {
      "target_name": "sprout_native",
      "sources": ["native/sprout_native.cc"],
      "include_dirs": ["/usr/include/x86_64-linux-gnu", "/usr/include/openblas"],
      "libraries": ["-lopenblas"],
      "cflags_cc": ["-O3", "-std=c++17"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
