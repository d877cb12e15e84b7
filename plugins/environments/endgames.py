"""Chess endgames (LMRL-Gym's Endgames task): mate a lone king with python-chess and the
Stockfish engine playing the defence.

Rules: the agent plays White from a random legal position (White to move, not in check, not
over; two bishops stand on squares of opposite colours) and must checkmate; Stockfish
(``opponent_depth`` plies) answers every move. Reward (LMRL-Gym): +1 for the mating move, -1
if White is mated, 0 for a draw (stalemate, insufficient material, the automatic 75-move and
fivefold-repetition rules) and for every other legal move; an illegal or unparseable move
scores -1 and ends the episode (``illegal_ends=False`` keeps LMRL-Gym's code behaviour
instead: -1 and the same position again). ``max_turns`` ends the episode with 0.

Level (the knob, the endgame type): 1: K+Q+R v K, 2: K+R+R v K, 3: K+Q v K, 4: K+B+B v K
(``pieces="KRk"`` and the like override it). The seed draws the position.

Observations (compact, the default): the pieces, White's upper-case, e.g. ``"Kc3 Qd1 ke5"``,
at reset prefixed ``"mate: "``; after each turn the position after Black's reply, or
``"checkmate"``, ``"stalemate"``, ``"draw"``, ``"illegal"``. Moves are UCI (``d1d5``) or SAN
(``Qd5``, ``qd5``, ``Qd5+``). ``verbose=True`` adds the FEN and Black's move in sentences.

Expert: Stockfish at ``expert_depth`` (8; 10 for K+B+B), taking the best of its three
principal variations that does not repeat a position (a shallow engine without tablebases
otherwise shuffles). Every engine call starts a new game (``ucinewgame`` clears the hash), so
the same seed and moves give the same replies whoever played before. K+R v K is offered but
not a level: the shallow expert does not mate it reliably.

Needs ``chess==1.11.2`` (PyPI) and the ``stockfish`` binary (Debian package ``stockfish``,
installed as ``/usr/games/stockfish``; or ``engine_path=`` / ``$STOCKFISH_PATH``).
"""
from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import threading

from core.hookspecs import hookimpl
from core.specs import EnvironmentSpec
from plugins.environments._base import TextEnv

PIECES = {1: "KQRk", 2: "KRRk", 3: "KQk", 4: "KBBk"}
TURNS = {1: 16, 2: 24, 3: 30, 4: 40}
DEPTH = {1: 8, 2: 8, 3: 8, 4: 10}
_ENGINES: dict[str, "Stockfish"] = {}
_LOCK = threading.Lock()
DEBIAN_PATH = "/usr/games/stockfish"


def find_engine(engine_path: str | None = None) -> str:
    """The Stockfish binary: ``engine_path``, ``$STOCKFISH_PATH``, ``stockfish`` on the PATH,
    or Debian's ``/usr/games/stockfish``; a clear error naming the package when none exists."""
    for path in (engine_path, os.environ.get("STOCKFISH_PATH"), shutil.which("stockfish"),
                 DEBIAN_PATH):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise RuntimeError("endgames needs the Stockfish chess engine, which was not found: install "
                       "it (`apt-get install stockfish`, Debian puts it at /usr/games/stockfish) "
                       "or pass engine_path= / set STOCKFISH_PATH")


def _import_chess():
    try:
        import chess
    except ImportError as exc:
        raise RuntimeError("endgames needs python-chess: `pip install chess==1.11.2`") from exc
    return chess


class Stockfish:
    """A minimal UCI client over pipes (python-chess's engine module runs a non-daemon thread
    that keeps the interpreter from exiting while an engine is open). Every search starts a
    new game (``ucinewgame`` clears the hash) with one thread and a depth limit, so its result
    depends on the position alone."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lock = threading.Lock()
        self._send("uci")
        self._wait("uciok")
        self._send("setoption name Threads value 1")
        self._send("setoption name Hash value 16")

    def _send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def _wait(self, prefix: str) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"Stockfish exited (code {self.proc.poll()}) while we "
                                   f"waited for {prefix!r}")
            if line.startswith(prefix):
                return line

    def search(self, fen: str, depth: int, multipv: int = 1) -> list[str]:
        """The first moves (UCI) of the ``multipv`` best lines at ``depth``, best first."""
        with self.lock:
            self._send(f"setoption name MultiPV value {multipv}")
            self._send("ucinewgame")
            self._send("isready")
            self._wait("readyok")
            self._send(f"position fen {fen}")
            self._send(f"go depth {depth}")
            lines: dict[int, str] = {}
            while True:
                line = self._wait("")
                if line.startswith("bestmove"):
                    break
                words = line.split()
                if words[:1] == ["info"] and "pv" in words and "multipv" in words:
                    lines[int(words[words.index("multipv") + 1])] = words[words.index("pv") + 1]
            return [lines[k] for k in sorted(lines)] or [line.split()[1]]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send("quit")
            except OSError:
                pass
            self.proc.wait(timeout=5)


def engine(path: str) -> Stockfish:
    """One Stockfish process per binary and Python process, shared by every env (searches are
    serialised by a lock and independent of each other, so sharing keeps results exact)."""
    with _LOCK:
        if path not in _ENGINES:
            _ENGINES[path] = Stockfish(path)
            atexit.register(_ENGINES[path].close)
        return _ENGINES[path]


def random_position(pieces: str, rng, chess):
    """A legal position with ``pieces`` (upper case White), White to move."""
    board = chess.Board(None)
    while True:
        board.clear()
        for symbol, square in zip(pieces, rng.sample(range(64), len(pieces))):
            board.set_piece_at(square, chess.Piece.from_symbol(symbol))
        board.turn = chess.WHITE
        bishops = list(board.pieces(chess.BISHOP, chess.WHITE))
        colours = {(chess.square_file(s) + chess.square_rank(s)) % 2 for s in bishops}
        if (board.is_valid() and not board.is_check() and board.outcome() is None
                and len(colours) == len(bishops)):
            return board


def describe(board, chess) -> str:
    order = "KQRBNP"
    pieces = sorted(board.piece_map().items(),
                    key=lambda sp: (not sp[1].color, order.index(sp[1].symbol().upper()), sp[0]))
    return " ".join(p.symbol() + chess.square_name(s) for s, p in pieces)


class Endgame(TextEnv):
    name = "endgames"
    turns_by_level = TURNS
    invalid_penalty = -1.0

    def __init__(self, level: int = 2, verbose: bool = False, max_turns: int | None = None,
                 pieces: str | None = None, engine_path: str | None = None,
                 opponent_depth: int = 2, expert_depth: int | None = None,
                 illegal_ends: bool = True) -> None:
        super().__init__(level, verbose, max_turns)
        self.chess = _import_chess()
        self.engine_path = find_engine(engine_path)
        self.pieces = pieces or PIECES[level]
        if not re.fullmatch(r"K[QRBNP]+k", self.pieces):
            raise ValueError(f"endgames: pieces {self.pieces!r}; expected White's K, its pieces "
                             f"(QRBNP) and Black's lone k, e.g. 'KRk'")
        self.opponent_depth, self.illegal_ends = opponent_depth, illegal_ends
        self.expert_depth = expert_depth or DEPTH[level]
        self.board = None

    def _reset(self) -> str:
        self.board = random_position(self.pieces, self.rng, self.chess)
        self.episode_key = self.board.fen()
        if self.verbose:
            return (f"You play White and must checkmate Black. Position (FEN): {self.board.fen()}. "
                    f"Pieces: {describe(self.board, self.chess)}. Give your move in UCI (e.g. "
                    f"d1d5) or SAN (e.g. Qd5).")
        return "mate: " + describe(self.board, self.chess)

    def reveal(self) -> str:
        return self.board.fen()

    def _step(self, action: str) -> tuple[str, float, bool, dict]:
        move = self.parse(action)
        if move is None:
            obs, reward, _, info = self._invalid(f"illegal or unparseable move: {action!r}",
                                                 "Illegal move." if self.verbose else "illegal")
            return obs, reward, self.illegal_ends, info
        self.board.push(move)
        if self.board.outcome() is not None:
            return self._finish()
        best = engine(self.engine_path).search(self.board.fen(), self.opponent_depth)[0]
        reply = self.chess.Move.from_uci(best)
        san = self.board.san(reply)
        self.board.push(reply)
        if self.board.outcome() is not None:
            return self._finish()
        if self.verbose:
            return (f"Black played {san}. Position (FEN): {self.board.fen()}. "
                    f"Pieces: {describe(self.board, self.chess)}."), 0.0, False, {}
        return describe(self.board, self.chess), 0.0, False, {}

    def _finish(self) -> tuple[str, float, bool, dict]:
        outcome = self.board.outcome()
        if outcome.winner == self.chess.WHITE:
            return self._win("Checkmate, you win." if self.verbose else "checkmate", 1.0)
        if outcome.winner == self.chess.BLACK:
            return ("You are checkmated." if self.verbose else "mated"), -1.0, True, {}
        word = "stalemate" if outcome.termination == self.chess.Termination.STALEMATE else "draw"
        return (f"Draw ({outcome.termination.name.lower()})." if self.verbose else word), 0.0, True, {}

    def parse(self, action: str):
        """The legal move meant by ``action`` (UCI, or SAN as given or capitalised), else None."""
        lines = [ln for ln in action.splitlines() if ln.strip()]
        text = (lines[0] if lines else "").strip().strip(".!?\"'` ").rstrip("+#")
        if re.fullmatch(r"[a-hA-H][1-8][a-hA-H][1-8][qrbnQRBN]?", text):
            move = self.chess.Move.from_uci(text.lower())
            return move if move in self.board.legal_moves else None
        for san in (text, text[:1].upper() + text[1:]):
            try:
                return self.board.parse_san(san)
            except ValueError:
                continue
        return None


def expert(env: Endgame) -> str:
    """Stockfish's best non-repeating move, in UCI (SAN when verbose)."""
    board, chess = env.board, env.chess
    moves = [chess.Move.from_uci(m) for m in
             engine(env.engine_path).search(board.fen(), env.expert_depth, multipv=3)]
    choice = moves[0]
    for move in moves:
        board.push(move)
        repeats = board.is_repetition(2)
        board.pop()
        if not repeats:
            choice = move
            break
    return board.san(choice) if env.verbose else choice.uci()


@hookimpl
def agentic_rl_environments():
    yield EnvironmentSpec(
        name="endgames", factory=Endgame, max_turns=max(TURNS.values()), levels=tuple(PIECES),
        options=("level", "verbose", "max_turns", "pieces", "engine_path", "opponent_depth",
                 "expert_depth", "illegal_ends"),
        knob="endgame: KQR v K, KRR v K, KQ v K, KBB v K", expert=expert,
        description="mate a lone king against Stockfish (python-chess); +1 win, -1 loss or illegal move")
