// Plain JavaScript: Jest loads the sequencer outside its transform.
import Sequencer from '@jest/test-sequencer';

/**
 * The cluster test files share one installation. node.test.ts ends by uninstalling the chart, so it
 * runs last; the others run before it in the order of their paths.
 */
export default class ClusterSequencer extends Sequencer {
  sort(tests) {
    const last = (t) => (t.path.endsWith('/node.test.ts') ? 1 : 0);
    return [...tests].sort((a, b) => last(a) - last(b) || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }
}
