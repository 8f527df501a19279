// Every integration and e2e test file runs kafkajs with the native CRC-32C, as the collector
// and processor do in production (common/kafka.ts useNativeCrc32c). It must be installed
// before kafkajs binds its record batch module, so before a test file imports anything that
// produces; a processor started later in the same process then finds it installed.
// The collector's record batch patch likewise (common/kafkajs-record-batch.ts), after it.
import { useNativeCrc32c } from '../../common/kafka.js';
import { fixKafkajsRecordBatchCopies } from '../../common/kafkajs-record-batch.js';

useNativeCrc32c();
fixKafkajsRecordBatchCopies();
