"""Car dealer (LMRL-Gym's Car Dealer task) with a scripted buyer: the agent is the seller.

LMRL-Gym's buyer is an LLM with a personality, preferences and a budget; here the buyer is a
rule that hides the car type it wants and its budget and answers a closed set of questions, so
episodes are exact and free. The catalogue's list prices (MSRP, in $k): sedan 20, van 25,
suv 30, truck 35, coupe 40; the budget lies between the wanted car's MSRP and MSRP + spread.

Actions: ``type?`` (which car do you want), ``budget?``, ``suv?`` (do you want an suv),
``offer suv 32`` (or ``suv 32``; prices in $k). Replies: the type or budget, ``won't say``,
``yes``/``no``, and to an offer ``wrong car``, ``too high`` or ``deal`` (which ends the
episode). Reward (LMRL-Gym's "fancy" rule): a sale at price P scores P / ((budget + MSRP) / 2);
no sale by ``max_turns`` scores -(budget - MSRP) / MSRP on the last turn; every other turn 0.
An unparseable action is invalid (0, ``"invalid"``).

Level (the knob, the buyer's reticence): 1: tells type and budget (spread 4); 2: tells the
type only (spread 6); 3: answers only yes/no type questions (spread 8); 4: the same with
spread 12. Observations (compact): reset ``"sell a car: sedan 20 van 25 suv 30 truck 35
coupe 40"``, then the buyer's reply. ``verbose=True`` words them as dialogue.

Expert: find the type (ask it, or ask the types in turn), ask the budget when the buyer tells
it, else offer from the top of the possible range down by 1 until the buyer takes it; so it
sells at exactly the budget, the most the buyer pays.
"""
from __future__ import annotations

import re

from core.hookspecs import hookimpl
from core.specs import EnvironmentSpec
from plugins.environments._base import TextEnv, normalize

MSRP = {"sedan": 20, "van": 25, "suv": 30, "truck": 35, "coupe": 40}
SPREAD = {1: 4, 2: 6, 3: 8, 4: 12}
TURNS = {1: 8, 2: 12, 3: 18, 4: 24}


class CarDealer(TextEnv):
    name = "car_dealer"
    turns_by_level = TURNS
    invalid_penalty = 0.0

    def _reset(self) -> str:
        self.want = self.rng.choice(sorted(MSRP))
        self.budget = MSRP[self.want] + self.rng.randint(0, SPREAD[self.level])
        self.known_type: str | None = None
        self.ruled_out: set[str] = set()
        self.known_budget: int | None = None
        self.too_high: dict[str, int] = {}            # lowest rejected price per type
        self.episode_key = f"{self.want} {self.budget}"
        cars = " ".join(f"{t} {p}" for t, p in MSRP.items())
        if self.verbose:
            return (f"You are a car dealer; a buyer walks in. List prices in $k: {cars}. Ask "
                    f"'type?', 'budget?' or 'suv?', or make an offer like 'offer suv 32'.")
        return f"sell a car: {cars}"

    def reveal(self) -> str:
        return self.episode_key

    def _step(self, action: str) -> tuple[str, float, bool, dict]:
        obs, reward, done, info = self._act(action)
        if not done and self.turn >= self.max_turns:  # the buyer leaves: LMRL-Gym's no-sale score
            msrp = MSRP[self.want]
            return obs + ("; bye" if not self.verbose else " The buyer leaves."), \
                -(self.budget - msrp) / msrp, True, {**info, "truncated": True}
        return obs, reward, done, info

    def _act(self, action: str) -> tuple[str, float, bool, dict]:
        text = normalize(action) or ""
        offer = re.fullmatch(r"(?:offer |sell )?(?:the |a |an )?([a-z]+)\s*(?:for |at )?\$?(\d+)k?", text)
        if offer and offer.group(1) in MSRP:
            return self._offer(offer.group(1), int(offer.group(2)))
        if text in ("type", "which type", "what type", "which car", "what car"):
            reply = self.want if self.level <= 2 else "won't say"
            self.known_type = self.known_type or (self.want if self.level <= 2 else None)
        elif text in ("budget", "what budget", "what is your budget"):
            reply = str(self.budget) if self.level == 1 else "won't say"
            self.known_budget = self.budget if self.level == 1 else None
        elif text.removeprefix("do you want a ").removeprefix("do you want an ") in MSRP:
            car = text.split()[-1]
            reply = "yes" if car == self.want else "no"
            if reply == "yes":
                self.known_type = car
            else:
                self.ruled_out.add(car)
        else:
            return self._invalid(f"unparseable: {action!r}", "Sorry?" if self.verbose else "invalid")
        return self._reply(reply)

    def _offer(self, car: str, price: int) -> tuple[str, float, bool, dict]:
        if car != self.want:
            self.ruled_out.add(car)
            return self._reply("wrong car")
        if price > self.budget:
            self.too_high[car] = min(price, self.too_high.get(car, price))
            return self._reply("too high")
        reward = price / ((self.budget + MSRP[car]) / 2)
        return self._win(f"Deal at {price}k." if self.verbose else "deal", reward)

    def _reply(self, reply: str) -> tuple[str, float, bool, dict]:
        return (f"Buyer: {reply}." if self.verbose else reply), 0.0, False, {}


def expert(env: CarDealer) -> str:
    left = [t for t in sorted(MSRP) if t not in env.ruled_out]
    car = env.known_type or (left[0] if len(left) == 1 else None)
    if car is None:
        if env.level <= 2:
            return "type?"
        return left[0] + "?"
    if env.level == 1 and env.known_budget is None:
        return "budget?"
    price = env.known_budget or min(env.too_high.get(car, MSRP[car] + SPREAD[env.level] + 1) - 1,
                                    MSRP[car] + SPREAD[env.level])
    return f"offer {car} {price}"


@hookimpl
def agentic_rl_environments():
    yield EnvironmentSpec(
        name="car_dealer", factory=CarDealer, max_turns=max(TURNS.values()),
        options=("level", "verbose", "max_turns"), levels=tuple(SPREAD),
        knob="buyer reticence and budget spread: tells all / type only / yes-no only / wider spread",
        expert=expert,
        description="sell a car to a scripted buyer; price / mean(budget, MSRP) on a sale")
