/**
 * The PolicyPack entry: `pulumi preview --policy-pack policy` (see README.md). Creating the
 * pack starts the analyzer server, so tests never import this file: they call the handlers in
 * ./policies.ts directly.
 */
import { PolicyPack } from "@pulumi/policy";
import { policies, stackPolicies } from "./policies.js";

new PolicyPack("crypto-prediction-infra", { policies: [...policies, ...stackPolicies], enforcementLevel: "mandatory" });
