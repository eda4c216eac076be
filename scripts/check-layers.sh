#!/usr/bin/env bash
# The layering of README's "Layout" table, enforced: a module of src/ may use (`crate::x`) only
# modules below it. Prints every offending line and exits 1 if there is one. Doc comments are
# not imports and are not checked.
set -euo pipefail
cd "$(dirname "$0")/.."
# Top to bottom; a module may import only modules listed after it, and the pure ones none.
layers=(cli report plot analysis fit engine sweep store train config model)
pure=" fit model "
rank() { local i; for i in "${!layers[@]}"; do [[ ${layers[$i]} == "$1" ]] && { echo "$i"; return; }; done; echo -1; }
bad=0
for module in "${layers[@]}"; do
  [[ -d src/$module ]] || continue
  own=$(rank "$module")
  while IFS= read -r hit; do
    file=${hit%%:*}; rest=${hit#*:}; line=${rest%%:*}; text=${rest#*:}
    [[ $text =~ ^[[:space:]]*//[/!] ]] && continue
    for target in $(grep -oE 'crate::[a-z_]+' <<<"$text" | sed 's/crate:://' | sort -u); do
      [[ $target == "$module" ]] && continue
      theirs=$(rank "$target")
      if [[ $pure == *" $module "* ]]; then
        echo "$file:$line: $module is pure and imports no other module, but imports $target:$text"
        bad=1
      elif (( theirs <= own )); then
        echo "$file:$line: $module imports $target, which is not below it:$text"
        bad=1
      fi
    done
  done < <(grep -rn 'crate::' "src/$module" || true)
done
# Inside these modules the files import each other in one direction too: a file may use
# (`super::x`, `crate::module::x`) only files that do not use it back, directly or around a
# circle. Test modules (`#[cfg(test)]` onwards) and doc comments are not imports.
acyclic=(analysis)
for module in "${acyclic[@]}"; do
  edges=""
  for path in src/$module/*.rs; do
    file=$(basename "$path" .rs)
    [[ $file == mod ]] && continue
    deps=$(sed '/#\[cfg(test)\]/,$d' "$path" | grep -vE '^[[:space:]]*//[/!]' \
      | grep -oE "(super|crate::$module)::[a-z_]+" | sed -E 's/.*:://' | sort -u || true)
    edges+="$file $file"$'\n'
    for dep in $deps; do
      [[ $dep == "$file" || ! -f src/$module/$dep.rs ]] && continue
      edges+="$file $dep"$'\n'
    done
  done
  if ! tsort <<<"$edges" >/dev/null 2>/tmp/check-layers.$$; then
    echo "src/$module: its files import each other in a circle:"
    grep -v 'input contains a loop' /tmp/check-layers.$$ | sed 's/^tsort: /  /'
    bad=1
  fi
  rm -f /tmp/check-layers.$$
done
if (( bad )); then
  echo "check-layers: the layering in README's Layout table is broken (see above)" >&2
  exit 1
fi
echo "check-layers: every module imports only modules below it (${layers[*]}); fit and model import none; no circle among the files of ${acyclic[*]}"
