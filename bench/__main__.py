"""``python -m bench [names...]``: run the benchmarks (all by default)."""
import sys

from bench import fit_speed, grpo_vs_trl, rm_serve, update_flops, verify_throughput

BENCHES = {"grpo_vs_trl": grpo_vs_trl.main, "update_flops": update_flops.main,
           "verify_throughput": verify_throughput.main, "rm_serve": rm_serve.main,
           "fit_speed": fit_speed.main}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHES)
    for name in names:
        if name not in BENCHES:
            sys.exit(f"unknown benchmark {name!r}; allowed: {', '.join(BENCHES)}")
    for name in names:
        print(f"\n### {name}", flush=True)
        BENCHES[name]()
