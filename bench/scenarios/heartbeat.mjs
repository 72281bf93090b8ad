export async function heartbeat() { return 'not implemented yet'; }
