# bash completion for dynmhsctl                                   -*- shell-script -*-
_dynmhsctl() {
    local cur prev words cword
    _init_completion 2>/dev/null || { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
    local commands="status networks rules routes describe reload add remove log-level"
    local i command=""
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in -*) ;; *) command=${words[i]}; break ;; esac
    done
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "--json --help --version" -- "$cur"))
        return
    fi
    case $command in
        "") COMPREPLY=($(compgen -W "$commands" -- "$cur")) ;;
        remove|routes)
            # the managed interfaces, from the daemon (quietly nothing if it is not running)
            local names
            names=$(dynmhsctl --json networks 2>/dev/null | sed -n 's/^ *"interface": "\(.*\)",$/\1/p')
            COMPREPLY=($(compgen -W "$names" -- "$cur")) ;;
        add) COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null | sed 's/$/:/')" -- "$cur")); compopt -o nospace 2>/dev/null ;;
        log-level) COMPREPLY=($(compgen -W "trace debug info warning error fatal 0 1 2 3 4 5" -- "$cur")) ;;
    esac
}
complete -F _dynmhsctl dynmhsctl
