use mimalloc::MiMalloc;

// candle allocates a fresh buffer per op; glibc maps large buffers afresh each time, which costs
// 1.3-2x end to end (see docs/performance.md). mimalloc keeps them.
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    std::process::exit(0);
}
