// Every integration and e2e test file runs kafkajs with the native CRC-32C, as the collector
// and processor do in production (common/kafka.ts useNativeCrc32c). It must be installed
// before kafkajs binds its record batch module, so before a test file imports anything that
// produces; a processor started later in the same process then finds it installed.
import { useNativeCrc32c } from '../../common/kafka.js';

useNativeCrc32c();
