/* /: the current registration notice and the incident banner. */
'use strict';

(async () => {
  GH.incidentBanner();
  const curl = document.getElementById('curl');
  curl.textContent = curl.textContent.replace('curl /v1/', `curl ${location.origin}/v1/`);
  const p = await GH.policy();
  if (p && p.mode !== 'open') GH.say(document.getElementById('policy-notice'), GH.policyMessage(p), p.mode === 'closed' ? 'error' : 'warn');
})();
