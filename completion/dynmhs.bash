# bash completion for dynmhs                                      -*- shell-script -*-
_dynmhs() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
        -C|--config|-O|--logfile) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --state-directory) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        -L|--loglevel) COMPREPLY=($(compgen -W "0 1 2 3 4 5" -- "$cur")); return ;;
        -Z|--logcolor) COMPREPLY=($(compgen -W "on off" -- "$cur")); return ;;
        --source) COMPREPLY=($(compgen -W "static networkmanager networkd auto" -- "$cur")); return ;;
        --mptcp) COMPREPLY=($(compgen -W "off subflow signal subflow,backup subflow,fullmesh signal,backup" -- "$cur")); return ;;
        -N|--network|-I|--interface)
            COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null | sed 's/$/:/')" -- "$cur")); compopt -o nospace 2>/dev/null; return ;;
        --include|--exclude|--table-range|--table-idle) return ;;
    esac
    COMPREPLY=($(compgen -W "--network --interface --config --loglevel --logfile --logcolor --verbose --quiet
        --source --include --exclude --table-range --state-directory --table-idle --mptcp --no-dbus --service --version --help" -- "$cur"))
}
complete -F _dynmhs dynmhs
