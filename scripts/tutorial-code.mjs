// How an example's code reads in docs/TUTORIAL.md: its import of
// '../src/index.ts' becomes 'snakemq', the way an application imports it, and
// the sentence telling readers of examples/ to do just that is left out (the
// tutorial says it once, at the top). Shared by scripts/sync-tutorial.mjs and
// the test that checks the tutorial is in sync.

/** The words of that sentence; in the examples it may wrap onto a new `// ` line between any two. */
const SENTENCE = ['In', 'an', 'application,', 'import', 'from', "'snakemq'", 'instead', 'of', "'../src/index.ts'."]
const escape = (word) => word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
const sentence = SENTENCE.map(escape).join('(?: |\\n// )')
/** The sentence as a paragraph of its own (after an empty `//` line), or at the end of a line of prose. */
const PARAGRAPH = new RegExp(`//\\n// ${sentence}\\n`, 'g')
const TRAILING = new RegExp(` ${sentence}(?=\\n)`, 'g')

/** The code docs/TUTORIAL.md shows for an example whose source is `source`. */
export function tutorialCode (source) {
  return source
    .replace(PARAGRAPH, '')
    .replace(TRAILING, '')
    .replaceAll("from '../src/index.ts'", "from 'snakemq'")
}
