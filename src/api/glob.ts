// Glob matching for allowedRoles and allowedNamespaces: "*" matches any run of characters (also none), every other
// character only itself. No regular expression: a pattern such as "a*a*a*…b" made the former RegExp backtrack
// exponentially (a 22-character pattern held the event loop for a minute).
//
// The pattern splits at "*" into literal pieces. The first piece must be a prefix and the last a suffix of the
// value; every piece between is matched at its leftmost occurrence after the previous one. Leftmost is always the
// best choice (it leaves the most room for the pieces after it), so no choice is ever revisited: at most one
// indexOf per piece, O(pattern × value) in the worst case and usually linear.

/** Whether value matches pattern, where "*" matches any run of characters and everything else matches literally. */
export function globMatch(pattern: string, value: string): boolean {
  const pieces = pattern.split('*');
  if (pieces.length === 1) return pattern === value;
  const first = pieces[0] ?? '';
  const last = pieces[pieces.length - 1] ?? '';
  if (value.length < first.length + last.length || !value.startsWith(first) || !value.endsWith(last)) return false;
  const end = value.length - last.length; // the middle pieces must fit before the suffix
  let from = first.length;
  for (const piece of pieces.slice(1, -1)) {
    if (piece === '') continue;
    const at = value.indexOf(piece, from);
    if (at < 0 || at + piece.length > end) return false;
    from = at + piece.length;
  }
  return true;
}
