"""The command palette (Ctrl+P): every screen, and every action of the current one."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from admin_tui.widgets.nav import SCREENS


class AdminCommands(Provider):
    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app = self.app
        found: list[tuple[str, Callable[[], object], str]] = [
            (f"Go to {title}", partial(app.switch_mode, mode), f"key {n} or F{n}")
            for n, (mode, title) in enumerate(SCREENS, 1)
        ]
        seen: set[str] = set()
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not (binding.show and binding.description and active.enabled):
                continue
            if binding.action in seen or binding.action.startswith("app.") or active.node is app:
                continue
            seen.add(binding.action)
            run = partial(app.run_action, binding.action, active.node)
            found.append((binding.description, run, f"key {binding.key_display or key}"))
        return found

    async def discover(self) -> Hits:
        for name, run, help_text in self._commands():
            yield DiscoveryHit(name, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, run, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=help_text)
