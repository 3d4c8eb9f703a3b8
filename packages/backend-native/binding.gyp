{
  "variables": {
    "openblas_dir%": "<!(node -p \"process.env.SPROUT_OPENBLAS_DIR || ''\")"
  },
  "targets": [
    {
      "target_name": "sprout_native",
      "sources": [
        "native/sprout_native.cc",
        "native/unary.cc",
        "native/reduce.cc",
        "native/layout.cc",
        "native/fused.cc",
        "native/pool.cc"
      ],
      "include_dirs": [
        "/usr/include/openblas",
        "/usr/include/x86_64-linux-gnu",
        "/usr/include/aarch64-linux-gnu"
      ],
      "libraries": [
        "-lopenblas"
      ],
      "cflags_cc!": [
        "-fno-exceptions"
      ],
      "cflags_cc": [
        "-O3",
        "-std=c++17",
        "-fno-math-errno",
        "-fno-trapping-math",
        "-fno-thread-jumps",
        "-fopenmp-simd"
      ],
      "defines": [
        "NAPI_VERSION=8"
      ],
      "ldflags": [
        "-pthread"
      ],
      "cflags": [
        "-pthread"
      ],
      "conditions": [
        [
          "target_arch=='x64'",
          {
            "cflags_cc": [
              "-march=x86-64-v2"
            ]
          }
        ],
        [
          "openblas_dir!=''",
          {
            "include_dirs": [
              "<(openblas_dir)/include",
              "<(openblas_dir)/include/openblas"
            ],
            "libraries": [
              "-L<(openblas_dir)/lib",
              "-Wl,-rpath,<(openblas_dir)/lib"
            ]
          }
        ]
      ]
    }
  ]
}
