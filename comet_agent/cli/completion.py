"""``comet-agent completion bash|zsh|fish``: a shell completion script, generated from the parser.

The scripts are written from ``build_parser()`` itself, so a new subcommand or option completes
without anyone editing a script. They are static: pressing TAB runs no Python (argcomplete's
way costs an interpreter start per TAB), and we need no dependency for it (shtab would write
much the same from the same parser; ours is this one module).

What completes: the subcommands (with their help in zsh and fish), each one's options and the
global ones, the choices of an option or argument that has them (``--log-format json``), folders
after ``--data-dir`` and ``--directory``, files after ``--socket``, and after ``run ... --`` the
command to wrap and its files.

Install:

- bash: ``eval "$(comet-agent completion bash)"`` in ``~/.bashrc``;
- zsh: ``comet-agent completion zsh > ~/.zfunc/_comet-agent`` with ``fpath=(~/.zfunc $fpath)``
  before ``compinit`` in ``~/.zshrc``;
- fish: ``comet-agent completion fish > ~/.config/fish/completions/comet-agent.fish``.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import Optional

PROG = "comet-agent"
# Options whose value is a folder, or a file: the shells complete paths there.
_DIRECTORY_DESTS = {"data_dir", "global_data_dir", "directory"}
_FILE_DESTS = {"socket"}


@dataclass(frozen=True)
class Option:
    """One option of the parser, as the scripts need it."""

    flags: tuple[str, ...]
    help: str
    takes_value: bool
    choices: tuple[str, ...] = ()
    path: Optional[str] = None  # "directory", "file" or None
    repeatable: bool = False


@dataclass(frozen=True)
class Command:
    """A subcommand: its name, help, options and the choices of its positional argument, if any."""

    name: str
    help: str
    options: tuple[Option, ...]
    positional_choices: tuple[str, ...] = ()
    wraps_command: bool = False  # run: everything after -- is a command line


def _short_help(action: argparse.Action) -> str:
    """The option's help, expanded as argparse does, up to its first clause."""
    text = action.help or ""
    if text == argparse.SUPPRESS:
        return ""
    try:
        text = text % {**vars(action), "prog": PROG}
    except (KeyError, TypeError, ValueError):
        pass
    text = re.split(r" \(|; |: ", text, maxsplit=1)[0]
    return text if len(text) <= 70 else text[:67].rstrip() + "..."


def _options(parser: argparse.ArgumentParser) -> tuple[Option, ...]:
    options = []
    for action in parser._actions:
        if not action.option_strings:
            continue
        path = "directory" if action.dest in _DIRECTORY_DESTS else "file" if action.dest in _FILE_DESTS else None
        options.append(
            Option(
                flags=tuple(action.option_strings),
                help=_short_help(action),
                takes_value=action.nargs != 0,
                choices=tuple(str(choice) for choice in action.choices or ()),
                path=path,
                repeatable=isinstance(action, (argparse._AppendAction, argparse._CountAction)),
            )
        )
    return tuple(options)


def describe(parser: argparse.ArgumentParser) -> tuple[tuple[Option, ...], tuple[Command, ...]]:
    """The global options and the subcommands of ``parser`` (``build_parser()``)."""
    commands = []
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, subparser in action.choices.items():
            positionals = [a for a in subparser._actions if not a.option_strings]
            choices = tuple(str(c) for a in positionals for c in (a.choices or ()))
            wraps = any(a.nargs == argparse.REMAINDER for a in positionals)
            commands.append(Command(name, helps.get(name, ""), _options(subparser), choices, wraps))
    return _options(parser), tuple(commands)


# -- bash ------------------------------------------------------------------------------------------


def bash_script(parser: argparse.ArgumentParser) -> str:
    """A bash completion script: ``complete -F _comet_agent comet-agent``."""
    global_options, commands = describe(parser)
    everything = global_options + tuple(o for c in commands for o in c.options)
    with_value = sorted({flag for o in everything if o.takes_value for flag in o.flags})
    directories = sorted({flag for o in everything if o.path == "directory" for flag in o.flags})
    files = sorted({flag for o in everything if o.path == "file" for flag in o.flags})
    choice_cases = sorted({(flag, " ".join(o.choices)) for o in everything if o.choices for flag in o.flags})
    cases = "".join(
        f'        {c.name}) words="{" ".join(sorted({f for o in c.options for f in o.flags}) + list(c.positional_choices))}" ;;\n'
        for c in commands
    )
    wrapping = " ".join(c.name for c in commands if c.wraps_command)
    lines = [
        f"# bash completion for {PROG}; generated by `{PROG} completion bash`.",
        f'# Install: eval "$({PROG} completion bash)" in ~/.bashrc',
        "_comet_agent() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    local command="" i word skip=""',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        word="${COMP_WORDS[i]}"',
        '        if [[ -n $skip ]]; then skip=""; continue; fi',
        '        case "$word" in',
        f"            {'|'.join(with_value)}) skip=1 ;;",
        "            --)",
        f'                if [[ -n $command && " {wrapping} " == *" $command "* ]]; then',
        "                    if ((i == COMP_CWORD - 1)); then",
        '                        COMPREPLY=($(compgen -c -- "$cur"))',
        "                    else",
        '                        COMPREPLY=($(compgen -f -- "$cur"))',
        "                    fi",
        "                    return",
        "                fi ;;",
        "            -*) ;;",
        '            *) [[ -z $command ]] && command="$word" ;;',
        "        esac",
        "    done",
        '    case "$prev" in',
    ]
    for flag, words in choice_cases:
        lines.append(f'        {flag}) COMPREPLY=($(compgen -W "{words}" -- "$cur")); return ;;')
    if directories:
        lines.append(f'        {"|".join(directories)}) COMPREPLY=($(compgen -d -- "$cur")); return ;;')
    if files:
        lines.append(f'        {"|".join(files)}) COMPREPLY=($(compgen -f -- "$cur")); return ;;')
    if with_value:
        lines.append(f"        {'|'.join(with_value)}) COMPREPLY=(); return ;;")
    lines += [
        "    esac",
        "    local words",
        '    case "$command" in',
        f'        "") words="{" ".join(sorted({f for o in global_options for f in o.flags}) + [c.name for c in commands])}" ;;',
    ]
    lines.append(cases.rstrip("\n"))
    lines += [
        '        *) words="" ;;',
        "    esac",
        '    COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "}",
        f"complete -o bashdefault -F _comet_agent {PROG}",
        "",
    ]
    return "\n".join(lines)


# -- zsh -------------------------------------------------------------------------------------------


def _zsh_quote(text: str) -> str:
    """``text`` inside single quotes, for zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_spec(option: Option) -> str:
    """One ``_arguments`` spec: ``'(-v --verbose)'{-v,--verbose}'[help]'``, with the value's action."""
    description = option.help.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    value = ""
    if option.takes_value:
        name = option.flags[-1].lstrip("-").replace(":", "")
        if option.choices:
            value = f":{name}:({' '.join(option.choices)})"
        elif option.path == "directory":
            value = f":{name}:_files -/"
        elif option.path == "file":
            value = f":{name}:_files"
        else:
            value = f":{name}: "
    body = f"[{description}]{value}"
    star = "*" if option.repeatable else ""  # quoted: an unquoted * is a glob in zsh
    if len(option.flags) == 1:
        return _zsh_quote(star + option.flags[0] + body)
    prefix = star or f"({' '.join(option.flags)})"  # a repeatable option does not exclude itself
    return f"{_zsh_quote(prefix)}{{{','.join(option.flags)}}}{_zsh_quote(body)}"


def zsh_script(parser: argparse.ArgumentParser) -> str:
    """A zsh completion function (``#compdef comet-agent``), for a file ``_comet-agent`` in ``$fpath``."""
    global_options, commands = describe(parser)
    lines = [
        f"#compdef {PROG}",
        f"# zsh completion for {PROG}; generated by `{PROG} completion zsh`.",
        f"# Install: {PROG} completion zsh > ~/.zfunc/_{PROG}, with fpath=(~/.zfunc $fpath) before compinit.",
        "",
        "_comet_agent() {",
        "    local curcontext=$curcontext state line ret=1",
        "    typeset -A opt_args",
        "    local -a commands",
        "    commands=(",
    ]
    lines += [f"        {_zsh_quote(c.name + ':' + c.help.replace(':', ' -'))}" for c in commands]
    lines += [
        "    )",
        "    _arguments -C \\",
    ]
    lines += [f"        {_zsh_spec(option)} \\" for option in global_options]
    lines += [
        "        '1:command:->command' \\",
        "        '*::argument:->argument' && ret=0",
        "    case $state in",
        f"        command) _describe -t commands {_zsh_quote(PROG + ' command')} commands && ret=0 ;;",
        "        argument)",
        "            curcontext=${curcontext%:*:*}:comet-agent-$words[1]:",
        "            case $words[1] in",
    ]
    for command in commands:
        specs = [_zsh_spec(option) for option in command.options]
        if command.positional_choices:
            specs.append(_zsh_quote(f"1:{command.name}:({' '.join(command.positional_choices)})"))
        if command.wraps_command:
            specs.append(_zsh_quote("*::command:_normal"))
        joined = " \\\n                        ".join(specs)
        lines.append(f"                {command.name}) _arguments \\\n                        {joined} && ret=0 ;;")
    lines += [
        "            esac ;;",
        "    esac",
        "    return ret",
        "}",
        "",
        '_comet_agent "$@"',
        "",
    ]
    return "\n".join(lines)


# -- fish ------------------------------------------------------------------------------------------


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(option: Option, condition: Optional[str]) -> str:
    parts = [f"complete -c {PROG}"]
    if condition:
        parts.append(f"-n {_fish_quote(condition)}")
    for flag in option.flags:
        parts.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
    if option.takes_value:
        if option.choices:
            parts.append(f"-x -a {_fish_quote(' '.join(option.choices))}")
        elif option.path == "directory":
            parts.append("-x -a '(__fish_complete_directories)'")
        elif option.path == "file":
            parts.append("-r -F")
        else:
            parts.append("-x")
    if option.help:
        parts.append(f"-d {_fish_quote(option.help)}")
    return " ".join(parts)


def fish_script(parser: argparse.ArgumentParser) -> str:
    """A fish completion script, for ``~/.config/fish/completions/comet-agent.fish``."""
    global_options, commands = describe(parser)
    lines = [
        f"# fish completion for {PROG}; generated by `{PROG} completion fish`.",
        f"# Install: {PROG} completion fish > ~/.config/fish/completions/{PROG}.fish",
        f"complete -c {PROG} -f",
    ]
    lines += [_fish_option(option, "__fish_use_subcommand") for option in global_options]
    for command in commands:
        lines.append(f"complete -c {PROG} -n '__fish_use_subcommand' -a {command.name} -d {_fish_quote(command.help)}")
    for command in commands:
        condition = f"__fish_seen_subcommand_from {command.name}"
        lines += [_fish_option(option, condition) for option in command.options]
        if command.positional_choices:
            choices = " ".join(command.positional_choices)
            chosen = f"{condition}; and not __fish_seen_subcommand_from {choices}"
            lines.append(f"complete -c {PROG} -n {_fish_quote(chosen)} -a {_fish_quote(choices)}")
        if command.wraps_command:
            # After `run ... --`: the command to wrap, then its files.
            wrapped = f"{condition}; and contains -- -- (commandline -opc)"
            lines.append(f"complete -c {PROG} -n {_fish_quote(wrapped)} -F -a '(__fish_complete_command)'")
    lines.append("")
    return "\n".join(lines)


SCRIPTS = {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}


def completion_from_args(args: argparse.Namespace) -> int:
    """``comet-agent completion SHELL``: print SHELL's completion script on stdout."""
    from comet_agent.cli import build_parser

    sys.stdout.write(SCRIPTS[args.shell](build_parser()))
    return 0
