"""The LMRL-Gym text environments (plugins/environments/) and their dataset plugin."""
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from core.plugins import registry
from core.protocols import Environment
from plugins.datasets.environments import builtin_env_names, load, split_of
from plugins.environments import expert_trajectory
from tests.conftest import ROOT

try:
    from plugins.environments.endgames import find_engine
    import chess  # noqa: F401
    find_engine()
    HAVE_CHESS = True
except (ImportError, RuntimeError):
    HAVE_CHESS = False

ALL = ("maze", "maze_po", "textnav", "wordle", "twenty_questions", "guess_my_city", "endgames",
       "car_dealer")
needs_chess = pytest.mark.skipif(not HAVE_CHESS, reason="needs python-chess and stockfish")
# expert levels per env: endgames' level 4 (K+B+B v K) takes ~1.5 s an episode, so it is
# measured in the README numbers, not here
LEVELS = {"endgames": (1, 2, 3, 1, 2)}


def run_cli(*args, input_text=""):
    return subprocess.run([sys.executable, "-m", "plugins.environments", *args], cwd=ROOT,
                          input=input_text, text=True, capture_output=True, timeout=120)


def envs(names=ALL):
    return [pytest.param(n, marks=needs_chess) if n == "endgames" else n for n in names]


def make(name, **options):
    return registry().get("environments", name).factory(**options)


def play(env, seed, actions):
    out = [env.reset(seed)]
    for a in actions:
        obs, reward, done, info = env.step(a)
        out.append((obs, reward, done, info))
    return out


# -- every environment ------------------------------------------------------------------
def test_registered_with_levels_options_and_expert():
    reg = registry()
    assert set(ALL) <= set(reg.names("environments")) and set(builtin_env_names()) == set(ALL)
    for name in ALL:
        spec = reg.get("environments", name)
        assert spec.levels == (1, 2, 3, 4) and spec.expert and spec.knob
        assert {"level", "verbose", "max_turns"} <= set(spec.options)


@pytest.mark.parametrize("name", envs())
def test_expert_wins_from_20_seeds(name):
    levels = LEVELS.get(name, (1, 2, 3, 4))
    for seed in range(20):
        t = expert_trajectory(name, seed, level=levels[seed % len(levels)])
        assert t.success, (name, seed, t.steps, t.final_observation)
        # LMRL-Gym's rules: -1 per turn and 0 on the winning one, +1 at the end, or the price
        if name == "car_dealer":
            assert t.rewards[:-1] == [0.0] * (t.turns - 1) and 1.0 <= t.ret < 1.5
            continue
        expected = 1.0 if name in ("textnav", "endgames") else -(t.turns - 1.0)
        assert t.ret == expected and t.rewards[-1] == (1.0 if expected == 1.0 else 0.0)


@pytest.mark.parametrize("name", envs())
def test_same_seed_same_episode(name):
    first = expert_trajectory(name, 7, level=2)
    actions = [a for _, a in first.steps[:-1]] + ["nonsense!", first.steps[-1][1]]
    opts = {"illegal_ends": False} if name == "endgames" else {}
    a, b = make(name, level=2, **opts), make(name, level=2, **opts)
    runs = [play(a, 7, actions), play(b, 7, actions)]
    strip = [[x if isinstance(x, str) else x[:3] for x in run] for run in runs]
    assert strip[0] == strip[1]
    keys = set()
    for s in range(8):
        env = make(name, level=2, **opts)
        env.reset(s)
        keys.add(env.episode_key)
    assert len(keys) > 1


@pytest.mark.parametrize("name", envs())
def test_max_turns_ends_the_episode(name):
    opts = {"illegal_ends": False} if name == "endgames" else {}
    env = make(name, level=1, max_turns=3, **opts)
    assert isinstance(env, Environment) and env.max_turns == 3
    env.reset(0)
    for turn in (1, 2, 3):
        obs, reward, done, info = env.step("xyzzy")
        assert isinstance(obs, str) and info["turn"] == turn and info["invalid"]
        assert done == (turn == 3) and not info["success"]
    assert info["truncated"]
    with pytest.raises(RuntimeError, match="over"):
        env.step("N")
    default = make(name, level=4)
    assert default.max_turns <= registry().get("environments", name).max_turns


@pytest.mark.parametrize("name", envs())
def test_garbage_actions_are_invalid_never_errors(name):
    opts = {"illegal_ends": False} if name == "endgames" else {}
    env = make(name, level=1, max_turns=20, **opts)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("N")
    env.reset(3)
    for action in ("", "   ", "\n\n", 42, None, "é" * 500, "[[??]]"):
        obs, reward, done, info = env.step(action)
        assert info["invalid"] and reward == env.invalid_penalty and not done
        assert set(info) >= {"success", "invalid", "turn"}


@pytest.mark.parametrize("name", envs())
def test_verbose_format_is_longer_and_plays_the_same(name):
    compact = expert_trajectory(name, 4, level=1)
    verbose = expert_trajectory(name, 4, level=1, verbose=True)
    assert verbose.success and len(verbose.steps[0][0]) > len(compact.steps[0][0])
    assert verbose.turns == compact.turns


# -- per-environment rules ----------------------------------------------------------------
def test_maze_rewards_walls_and_parsing():
    from plugins.environments.maze import shortest_moves
    env = make("maze", level=2)
    obs = env.reset(5)
    assert obs.startswith(f"at {env.pos[0]},{env.pos[1]} goal {env.goal[0]},{env.goal[1]} walls ")
    moves = shortest_moves(env.layout, env.pos, env.goal)
    wall = next(d for d in "NESW" if d not in env.layout[env.pos])
    start = env.pos
    assert env.step("jump")[1:3] == (-4.0, False) and env.pos == start       # invalid: -4
    obs, reward, done, info = env.step(f"  move {dict(N='up', S='down', E='right', W='left')[wall]} ")
    assert (reward, info["bump"], env.pos) == (-1.0, True, start)            # a wall: -1, stay
    rewards = [env.step(m.lower())[1] for m in moves]
    assert rewards == [-1.0] * (len(moves) - 1) + [0.0] and env.done and env.success
    env = make("maze", level=1)                                              # losing: bump until out
    env.reset(5)
    wall = next(d for d in "NESW" if d not in env.layout[env.pos])
    results = [env.step(wall) for _ in range(env.max_turns)]
    assert sum(r for _, r, _, _ in results) == -env.max_turns and results[-1][3]["truncated"]


def test_maze_po_shows_position_only_at_reset():
    env = make("maze_po", level=3)
    assert env.reset(2).startswith("at ")
    obs = env.step("N")[0]
    assert obs.startswith("walls ") or obs == "goal"


def test_textnav_rewards():
    from plugins.environments.textnav import expert
    env = make("textnav", level=2)
    first = env.reset(1)
    assert first.startswith(f"task: {env.item} from {env.item_room} to {env.box}\nin {env.room}: ")
    obs, reward, done, info = env.step("dance")
    assert (obs, reward, done, info["invalid"]) == ("invalid", 0.0, False, True)
    assert env.step(f"take {env.item}")[3]["invalid"] == (env.room != env.item_room)
    env.reset(1)
    total, done = 0.0, False
    while not done:
        _, reward, done, info = env.step(expert(env))
        total += reward
    assert (total, info["success"]) == (1.0, True)
    env = make("textnav", level=1)                                           # losing: no progress
    env.reset(0)
    results = [env.step("N" if i % 2 else "S") for i in range(env.max_turns)]
    assert sum(r for _, r, _, _ in results) == 0.0 and not results[-1][3]["success"]


def test_wordle_marks_and_rewards():
    from plugins.environments.wordle import marks, word_list
    assert marks("geese", "eerie") == "xgyxg" and marks("llama", "hello") == "yyxxx"
    assert marks("crane", "crane") == "ggggg"
    env = make("wordle", level=1)
    assert env.reset(0) == "wordle 5 letters 6 tries"
    assert env.step("qqqqq")[:3] == ("invalid", -1.0, False)                # invalid uses a try
    assert env.step(f"  {env.answer.upper()}\n") == ("ggggg", 0.0, True, {
        "success": True, "invalid": False, "turn": 2, "truncated": False, "answer": env.answer})
    env.reset(0)
    wrong = [w for w in word_list() if w != env.answer][:6]
    results = [env.step(w) for w in wrong]
    assert [r for _, r, _, _ in results] == [-1.0] * 6 and results[-1][2] and not results[-1][3]["success"]


def test_twenty_questions_and_city_rules():
    from plugins.environments.questions import table
    env = make("twenty_questions", level=4)
    env.reset(11)
    truth = table("twenty_questions")[1][env.item]
    assert env.step("Is it an animal?")[:3] == (truth["animal"], -1.0, False)
    wrong = next(n for n in env.names if n != env.item)
    assert env.step(f"is it a {wrong}?")[:2] == ("no", -1.0)
    assert env.step("what colour is it")[3]["invalid"]
    assert env.step(f"guess {env.item}")[:3] == (f"yes, {env.item}", 0.0, True)
    city = make("guess_my_city", level=4)
    city.reset(3)
    row = table("guess_my_city")[1][city.item]
    assert city.step("continent?")[0] == row["continent"]
    assert city.step("is it in france")[0] == ("yes" if row["country"] == "france" else "no")
    assert city.step("coastal?")[0] == row["coastal"]
    assert city.step("country?")[3]["invalid"]                               # no open country question
    results = [city.step("capital?") for _ in range(city.max_turns - 4)]    # losing: out of turns
    assert results[-1][2] and results[-1][3]["truncated"] and not results[-1][3]["success"]
    assert sum(r for _, r, _, _ in results) == -(city.max_turns - 4)
    nyc = make("guess_my_city", level=4)
    nyc.reset(0)
    nyc.item = "new york"
    assert nyc.step("New York")[1:3] == (0.0, True)


def test_oracle_url_answers_free_questions():
    seen = []

    class Judge(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"choices": [{"message": {"content": "Yes."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.handle_request, daemon=True).start()
    env = make("twenty_questions", level=1, oracle_url=f"http://127.0.0.1:{server.server_port}")
    env.reset(0)
    obs, reward, done, info = env.step("does it purr?")
    assert (obs, reward, info["oracle"]) == ("yes", -1.0, True)
    system, user = seen[0]["messages"]
    assert user["content"] == "does it purr?" and env.item in system["content"]
    server.server_close()
    dead = make("twenty_questions", level=1, oracle_url="http://127.0.0.1:9", oracle_timeout=2)
    dead.reset(0)
    with pytest.raises(RuntimeError, match="oracle"):
        dead.step("does it purr?")


def test_car_dealer_rewards():
    from plugins.environments.car_dealer import MSRP
    env = make("car_dealer", level=1)
    assert env.reset(2).startswith("sell a car: sedan 20")
    msrp = MSRP[env.want]
    assert env.step("Type?")[:3] == (env.want, 0.0, False)
    assert env.step("budget?")[0] == str(env.budget)
    other = next(t for t in MSRP if t != env.want)
    assert env.step(f"offer {other} 10")[:2] == ("wrong car", 0.0)
    assert env.step(f"{env.want} {env.budget + 1}")[:2] == ("too high", 0.0)
    assert env.step("hello there")[3]["invalid"]
    obs, reward, done, info = env.step(f"offer {env.want} ${env.budget}k")
    assert (obs, done, info["success"]) == ("deal", True, True)
    assert reward == pytest.approx(env.budget / ((env.budget + msrp) / 2))
    env = make("car_dealer", level=3)                                        # losing: no sale
    env.reset(2)
    assert env.step("type?")[0] == "won't say" and env.step(f"{env.want}?")[0] == "yes"
    results = [env.step("budget?") for _ in range(env.max_turns - 2)]
    assert [r for _, r, _, _ in results[:-1]] == [0.0] * (env.max_turns - 3)
    obs, reward, done, info = results[-1]
    assert obs == "won't say; bye" and done and not info["success"]
    assert reward == pytest.approx(-(env.budget - MSRP[env.want]) / MSRP[env.want])


@needs_chess
def test_endgames_win_draw_loss_and_illegal():
    import chess
    env = make("endgames", level=3)
    assert env.reset(0).startswith("mate: K")
    env.board = chess.Board("k7/8/1K6/8/8/8/8/7Q w - - 0 1")
    assert env.step("h1h8") == ("checkmate", 1.0, True, {
        "success": True, "invalid": False, "turn": 1, "truncated": False, "answer": env.board.fen()})
    env.reset(0)
    env.board = chess.Board("k7/8/1K6/8/8/8/8/2Q5 w - - 0 1")
    assert env.step("Qc7")[:3] == ("stalemate", 0.0, True)                  # SAN, a draw
    env.reset(0)
    env.board = chess.Board("8/8/8/8/8/5kq1/P7/7K w - - 0 1")
    assert env.step("a3")[:3] == ("mated", -1.0, True)                      # Black mates: -1
    env.reset(0)
    assert env.step("e2e4")[:3] == ("illegal", -1.0, True)                  # illegal ends (default)
    keep = make("endgames", level=3, illegal_ends=False)
    first = keep.reset(0)
    assert keep.step("Kz9")[1:3] == (-1.0, False) and keep.board.fen() in keep.episode_key
    assert keep.step("qxx")[3]["invalid"] and first.startswith("mate:")


def test_endgames_names_the_missing_engine(monkeypatch):
    from plugins.environments import endgames
    monkeypatch.delenv("STOCKFISH_PATH", raising=False)
    monkeypatch.setattr(endgames.shutil, "which", lambda name: None)
    monkeypatch.setattr(endgames, "DEBIAN_PATH", "/nonexistent/stockfish")
    with pytest.raises(RuntimeError, match="apt-get install stockfish"):
        endgames.find_engine()


# -- the play CLI ---------------------------------------------------------------------------
def test_play_cli_with_piped_stdin():
    t = expert_trajectory("maze", 1, level=2)
    proc = run_cli("play", "maze", "--seed", "1", "--level", "2",
                   input_text="\n".join(a for _, a in t.steps) + "\n")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for obs, _ in t.steps:
        assert obs in lines                                                  # verbatim
    assert t.final_observation in lines
    assert f"# return {t.ret:g}  success True  turns {t.turns}" in lines
    stopped = run_cli("play", "wordle", input_text="crane\n")
    assert stopped.returncode == 1 and "stopped at the end of input" in stopped.stdout
    listing = run_cli("list")
    assert listing.returncode == 0 and all(n + ":" in listing.stdout for n in ALL)
    bad = run_cli("play", "maze", "--level", "9")
    assert bad.returncode == 2 and "level 9" in bad.stderr


# -- the dataset plugin ---------------------------------------------------------------------
def test_dataset_records_splits_and_seeding():
    domains = ["maze", "wordle", "twenty_questions", "textnav"]
    train = load("train", 32, domains, (1, 2), seed=0)
    evals = load("eval", 16, domains, (1, 2), seed=0)
    assert train == load("train", 32, domains, (1, 2), seed=0)
    assert train != load("train", 32, domains, (1, 2), seed=1)
    r = train[0]
    assert set(r) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    info = r["extra_info"]
    assert r["data_source"] == "env__" + info["env"]
    assert r["reward_model"] == {"style": "env", "ground_truth": ""}
    assert {x["extra_info"]["domain"] for x in train} == set(domains)
    assert {x["extra_info"]["difficulty"] for x in train} == {1, 2}
    for rec in train + evals:
        info = rec["extra_info"]
        assert info["expert_success"] and info["expert"][0][0] == rec["prompt"][0]["content"]
        assert split_of(info["env"], info["seed"]) == info["split"]
        env = make(info["env"], **info["options"])
        assert env.reset(info["seed"], rec) == rec["prompt"][0]["content"]  # replayable
    def seeds(recs):
        return {(x["extra_info"]["env"], x["extra_info"]["seed"]) for x in recs}
    assert seeds(train) and seeds(evals) and not seeds(train) & seeds(evals)
    assert {x["extra_info"]["split"] for x in evals} == {"eval"}
    with pytest.raises(ValueError, match="split"):
        load("test", 1, domains)


def test_noisy_teacher_slips_replay_and_keep_the_prompts():
    """``sft_noise``: the worked play slips (to another of the expert's own actions) at about that
    rate per turn, the expert re-plans from there, the play replays in the environment to its recorded
    return, the same seed gives the same slips, and prompts and episodes are the clean ones'."""
    domains = ["maze", "textnav"]
    clean = load("train", 40, domains, (1, 3), seed=0)
    noisy = load("train", 40, domains, (1, 3), seed=0, sft_noise=0.3)
    assert noisy == load("train", 40, domains, (1, 3), seed=0, sft_noise=0.3)
    assert [r["prompt"] for r in noisy] == [r["prompt"] for r in clean]
    turns = slips = 0
    for c, r in zip(clean, noisy):
        info = r["extra_info"]
        assert info["seed"] == c["extra_info"]["seed"] and info["sft_noise"] == 0.3
        assert info["clean_return"] == c["extra_info"]["expert_return"]
        env = make(info["env"], **info["options"])
        obs, ret = env.reset(info["seed"], r), 0.0
        for seen, action in info["expert"]:
            assert seen == obs
            obs, reward, done, step_info = env.step(action)
            ret += reward
        assert done and ret == info["expert_return"] and step_info["success"] == info["expert_success"]
        turns, slips = turns + len(info["expert"]), slips + info["slips"]
    assert 0.15 < slips / turns < 0.35                             # about the rate asked for
    assert sum(r["extra_info"]["expert_return"] for r in noisy) < sum(
        r["extra_info"]["expert_return"] for r in clean)           # slips cost the teacher
    assert "slips" not in clean[0]["extra_info"]


def test_gymnasium_adapter():
    pytest.importorskip("gymnasium")
    from plugins.environments._gym import to_gymnasium
    env = to_gymnasium("maze", level=1)
    obs, info = env.reset(seed=3)
    assert obs == make("maze", level=1).reset(3) and env.observation_space.contains(obs)
    t = expert_trajectory("maze", 3, level=1)
    for _, action in t.steps:
        assert env.action_space.contains(action)
        obs, reward, terminated, truncated, info = env.step(action)
    assert (obs, terminated, truncated, info["success"]) == ("goal", True, False, True)
    env.reset()                                                              # a drawn seed
    short = to_gymnasium("wordle", level=1, max_turns=1)
    short.reset(seed=0)
    assert short.step("qqqqq")[2:4] == (False, True)
