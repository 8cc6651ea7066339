#!/usr/bin/env bash
# Reproduce the paper's figures from the shipped problems, in one command (a few minutes on 2 cores):
#
#     bash examples/reproduce_paper.sh [OUT]        # default OUT = runs/paper
#
# Every study and comparison writes its own folder under OUT; the figures are gathered in OUT/figures.
# Run from the repository root after `pip install -e .`. Figure numbers refer to Suh et al. (ICML 2022).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/paper}
mkdir -p "$OUT/figures"
t() { echo "+ trajopt $*" >&2; trajopt "$@" --force --quiet; }
fig() { cp "$OUT/$1/$2" "$OUT/figures/$3"; }

# Fig. 8, column 1: pushing at soft and stiff contact (the headline result).
t compare problems/pushing_soft.toml --out "$OUT/pushing_soft"
t compare problems/pushing_stiff.toml --out "$OUT/pushing_stiff"
fig pushing_soft convergence.png fig8_pushing_soft.png
fig pushing_stiff convergence.png fig8_pushing_stiff.png

# Fig. 8, column 2: friction (FoBG improves first, then degrades).
t compare problems/friction.toml --out "$OUT/friction"
fig friction convergence.png fig8_friction.png

# Fig. 5: variance against stiffness on pushing (FoBG variance grows with k and crosses the ZoBG's).
t sweep problems/pushing_stiff.toml --over system.stiffness=logspace:1:3.5:11 --repeats 20 \
  --oracles fobg,zobg,aobg --out "$OUT/sweep_stiffness"
fig sweep_stiffness sweep.png fig5_variance_vs_stiffness.png

# Fig. 6: variance against horizon on the double pendulum (chaos: FoBG overtakes ZoBG as H grows).
t sweep problems/double_pendulum.toml --over task.horizon=25,50,100,200,300,400,500,600,800,1000 --repeats 10 \
  --oracles fobg,zobg,aobg --out "$OUT/sweep_horizon"
fig sweep_horizon sweep.png fig6_variance_vs_horizon.png

# Fig. 4: empirical variance against samples on the soft Heaviside (FoBG looks zero-variance at small N).
t sweep problems/soft_heaviside.toml --over oracle.samples=2,5,10,20,50,100,200,500,1000 --repeats 20 \
  --oracles fobg,zobg,aobg --out "$OUT/sweep_samples"
fig sweep_samples sweep.png fig4_variance_vs_samples.png

# Fig. 2: the Heaviside landscape in 1-D (FoBG identically 0, ZoBG tracks the smoothed gradient).
t landscape problems/heaviside.toml --set system.dimension=1 --set 'title="Heaviside in 1-D (Fig. 2)"' --range -1.5:1.5:121 --samples 1000 --repeats 10 \
  --oracles fobg,zobg,aobg,ddcg --out "$OUT/landscape_heaviside"
fig landscape_heaviside landscape.png fig2_heaviside.png

# Fig. 7: ball with wall and pivot, optimisation (20 seeds, the paper's settings) and landscapes with the
# final points marked. The landscapes use the paper's sweep settings (N = 1000; gamma 0.005 and 0.1).
t compare problems/ball_with_wall.toml --seeds 20 --oracles fobg,zobg,aobg,ddcg --out "$OUT/ball_with_wall"
t landscape problems/ball_with_wall.toml --range 0:1.5708:200 --samples 1000 --repeats 10 \
  --set oracle.aobg.gamma=0.005 --oracles fobg,zobg,aobg,ddcg --run "$OUT/ball_with_wall" \
  --out "$OUT/landscape_ball_with_wall"
t compare problems/pivot.toml --seeds 20 --oracles fobg,zobg,aobg,ddcg --out "$OUT/pivot"
t landscape problems/pivot.toml --range 0:1.5708:200 --samples 1000 --repeats 10 \
  --set oracle.aobg.gamma=0.1 --oracles fobg,zobg,aobg,ddcg --run "$OUT/pivot" --out "$OUT/landscape_pivot"
fig ball_with_wall convergence.png fig7_ball_with_wall_convergence.png
fig landscape_ball_with_wall landscape.png fig7_ball_with_wall_landscape.png
fig pivot convergence.png fig7_pivot_convergence.png
fig landscape_pivot landscape.png fig7_pivot_landscape.png

echo "figures in $OUT/figures:" >&2
ls "$OUT/figures" >&2
