// The C allocator of a training worker.
//
// glibc's malloc hands out blocks above its mmap threshold as fresh mappings (128 KB at start,
// raised as such blocks are freed, up to 32 MB) and gives the free memory at its heap's top back
// to the kernel once it exceeds the trim threshold (twice the mmap threshold). A training step
// allocates and frees the same activations and gradients every step, mostly between 100 KB and a
// few MB, so with these defaults the kernel maps and zeroes the same pages again at every step:
// a 100-step TTT-MLP run at the quickstart size took 252K page faults (69K with the settings
// below) and about 4% longer (docs/performance.md, "The allocator").
//
// tune_allocator() fixes the mmap threshold at 32 MB (glibc's largest) and the trim threshold at
// 256 MB, so a worker keeps what it freed for the next step, up to 256 MB of free memory at the
// heap's top. Blocks over 32 MB (large models) are still mapped and unmapped as before.
// The user's choice wins: with MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or a
// glibc.malloc tunable in GLIBC_TUNABLES set, nothing is changed; nor off glibc.
#pragma once

#include <string>

namespace lmgrid {

// Sets the thresholds (once, for the whole process: the training worker calls it first thing)
// and returns what the allocator now does: "mmap threshold 32 MB, trim threshold 256 MB", or
// why it was left alone.
std::string tune_allocator();
// What tune_allocator() would do in this environment, without doing it (`lmgrid env`).
std::string allocator_plan();

}  // namespace lmgrid
