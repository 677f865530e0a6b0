/** The code docs/TUTORIAL.md shows for an example whose source is `source`. */
export function tutorialCode (source: string): string
